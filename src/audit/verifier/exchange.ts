/**
 * Offline verification of an exchange's delivery evidence (docs/PROTOCOL.md
 * section 12.4): the sender's own audit entries with their inclusion proofs,
 * and per delivery the receiver's signed receipt, the receiver's audit entry
 * that binds that receipt, its inclusion proof and the receiver's signed
 * checkpoint. Pure (no I/O, no node: imports): the CLI injects SHA-256 and
 * ECDSA verify, as for evidence packs.
 *
 * Each organisation's part is anchored in its signing key: a statement
 * signed with it (typ audit-keys+jwt) names the keys that sign its
 * checkpoints. The first problem found is named, with its kind.
 */
import { makeHasher, verifyInclusion, type Hasher } from './merkle.ts';
import {
  derFromRaw,
  fromBase64,
  noteKeyId,
  parseCheckpoint,
  parseSignedNote,
  toBase64,
  utf8,
  type Checkpoint,
  type EcJwk,
} from './note.ts';
import type { VerifyDeps } from './verify.ts';

export const EXCHANGE_EVIDENCE_FORMAT = 'fhir-gateway-exchange-evidence/v1';

export const RECEIPT_TYP = 'exchange-receipt+jwt';
export const AUDIT_KEYS_TYP = 'audit-keys+jwt';

export interface SigningJwk extends EcJwk {
  kid: string;
}

/** One organisation's audit entries, proven in one of its signed checkpoints. */
export interface LogExcerpt {
  /** The organisation id (its receipts' iss, its signed requests' iss). */
  org: string;
  /** The log origin: the checkpoint's first line and the key name of its signatures. */
  origin: string;
  /** The organisation's signing key that signs `keys` (one it publishes in its JWKS). */
  signingKey: SigningJwk;
  /** Compact JWS, typ audit-keys+jwt, claims {iss, iat, origin, keys}: the keys that sign its checkpoints. */
  keys: string;
  /** A C2SP signed note (tlog-checkpoint). */
  checkpoint: string;
  entries: Array<{ index: number; entry: string; proof: string[] }>;
}

export interface DeliveryEvidence {
  delivery: string;
  recipient: string;
  /** The receiver's signed receipt (compact JWS), as the sender verified and stored it. */
  receipt: string;
  /** The receiver's signing key that verifies the receipt. */
  receiptKey: SigningJwk;
  /** The receiver's entry for the receipt; absent when the receiver has not proven it. */
  recipientLog?: LogExcerpt;
}

export interface ExchangeEvidence {
  format: typeof EXCHANGE_EVIDENCE_FORMAT;
  exchange: string;
  createdAt: string;
  sender: LogExcerpt;
  deliveries: DeliveryEvidence[];
}

export type ExchangeProblemKind =
  'malformed' | 'receipt-altered' | 'proof-invalid' | 'checkpoint-signature' | 'keys-statement' | 'entry-missing';

export interface ExchangeProblem {
  kind: ExchangeProblemKind;
  message: string;
  /** The organisation whose part is at fault. */
  org?: string;
  delivery?: string;
}

export interface ExchangeReport {
  ok: boolean;
  problem?: ExchangeProblem;
  exchange?: string;
  deliveriesVerified: number;
  entriesVerified: number;
  /** "org: kid" of each signing key the verdict rests on: compare with the keys each organisation publishes. */
  signingKeys: string[];
}

export interface ExchangeVerifyDeps extends Pick<VerifyDeps, 'sha256' | 'verifySignature'> {
  /** Trust only these signing keys (pinned out of band) instead of the keys the bundle carries. */
  trustedSigningKeys?: SigningJwk[];
}

class Fail extends Error {
  readonly problem: ExchangeProblem;
  constructor(problem: ExchangeProblem) {
    super(problem.message);
    this.problem = problem;
  }
}
function fail(p: ExchangeProblem): never {
  throw new Fail(p);
}

const b64url = (bytes: Uint8Array) => toBase64(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

/** "sha-256=" + base64url(SHA-256(text)): the digest form of receipts, envelopes and receipt entries. */
export function digestOf(text: string, sha256: (d: Uint8Array) => Uint8Array): string {
  return `sha-256=${b64url(sha256(utf8(text)))}`;
}

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/**
 * The three segments of the ES256 signature: a compact JWS as it is, or the
 * ES256 entry of a protocol v2 dual-signed JWS (JSON serialization). The
 * offline verifier checks that classical signature only (it has ECDSA, not
 * ML-DSA); the gateway checked both when it accepted the receipt.
 */
function es256Segments(jws: string): Array<string | undefined> {
  if (!jws.trimStart().startsWith('{')) return jws.split('.');
  let doc: unknown;
  try {
    doc = JSON.parse(jws);
  } catch {
    return [];
  }
  const { payload, signatures } = (isObject(doc) ? doc : {}) as { payload?: unknown; signatures?: unknown };
  if (typeof payload !== 'string' || !Array.isArray(signatures)) return [];
  const es = signatures.find((e: unknown) => {
    if (!isObject(e) || typeof e.protected !== 'string') return false;
    try {
      const header: unknown = JSON.parse(new TextDecoder().decode(fromBase64(e.protected, true)));
      return isObject(header) && header.alg === 'ES256';
    } catch {
      return false;
    }
  }) as { protected: string; signature?: unknown } | undefined;
  return es && typeof es.signature === 'string' ? [es.protected, payload, es.signature] : [];
}

/**
 * Verify an ES256 JWS with `jwk` and read its JSON claims: the header must
 * name typ and the key's kid. A dual-signed (v2) JWS is checked by its ES256
 * signature. Throws a plain Error saying what failed.
 */
export async function verifyEs256Jws(
  jws: string,
  jwk: SigningJwk,
  typ: string,
  deps: Pick<VerifyDeps, 'verifySignature'>,
): Promise<Record<string, unknown>> {
  const parts = es256Segments(jws);
  const [h, p, s] = parts;
  if (parts.length !== 3 || h === undefined || p === undefined || s === undefined)
    throw new Error('not a compact JWS, nor a JSON one with an ES256 signature');
  let header: unknown;
  let claims: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(fromBase64(h, true)));
    claims = JSON.parse(new TextDecoder().decode(fromBase64(p, true)));
  } catch {
    throw new Error('its header or payload is not base64url JSON');
  }
  if (!isObject(header) || header.alg !== 'ES256' || header.typ !== typ)
    throw new Error(`its header is not {alg ES256, typ ${typ}}`);
  if (header.kid !== jwk.kid) throw new Error(`it names key ${String(header.kid)}, not ${jwk.kid}`);
  let raw: Uint8Array;
  try {
    raw = fromBase64(s, true);
  } catch {
    throw new Error('its signature is not base64url');
  }
  if (raw.length !== 64 || !(await deps.verifySignature(jwk, utf8(`${h}.${p}`), derFromRaw(raw))))
    throw new Error(`its signature does not verify with key ${jwk.kid}`);
  if (!isObject(claims)) throw new Error('its payload is not a JSON object');
  return claims;
}

/**
 * A C2SP checkpoint signed by one of `keys` under the name `origin`: at least
 * one signature by a known key, and every signature by a known key verifies.
 * Throws a plain Error naming what failed.
 */
export async function verifyCheckpointNote(
  note: string,
  origin: string,
  keys: EcJwk[],
  deps: Pick<VerifyDeps, 'sha256' | 'verifySignature'>,
): Promise<Checkpoint> {
  const parsed = parseSignedNote(note);
  const body = parseCheckpoint(parsed.body);
  const known = keys.map((k) => ({ jwk: k, id: noteKeyId(k, deps.sha256) }));
  let verified = 0;
  for (const sig of parsed.signatures) {
    const key = sig.name === origin ? known.find((k) => k.id === sig.keyId) : undefined;
    if (!key) continue; // C2SP: signatures by unknown keys are ignored
    if (!(await deps.verifySignature(key.jwk, utf8(parsed.body), sig.signature)))
      throw new Error(`the signature by audit key ${String(key.jwk.kid)} does not verify`);
    verified++;
  }
  if (verified === 0) throw new Error(`it carries no signature by an audit key of ${origin}`);
  if (body.origin !== origin) throw new Error(`it is a checkpoint of "${body.origin}", not "${origin}"`);
  return body;
}

/** The receipt entry rule (section 12.1): why `entry` is not the receiver's record of this receipt, or undefined. */
export function receiptEntryProblem(
  entry: string,
  want: { index: number; receiptId: string; receiptDigest: string; delivery: string },
): string | undefined {
  let e: unknown;
  try {
    e = JSON.parse(entry);
  } catch {
    return 'the entry is not JSON';
  }
  if (!isObject(e) || e.index !== want.index) return `the entry is not leaf ${want.index}`;
  if (e.type !== 'inbox.accepted') return `the entry is ${String(e.type)}, not inbox.accepted`;
  const entity = Array.isArray(e.entity) ? e.entity.filter(isObject) : [];
  const has = (type: string, id: string, digest?: string) =>
    entity.some((x) => x.type === type && x.id === id && (digest === undefined || x.digest === digest));
  if (!has('receipt', want.receiptId, want.receiptDigest))
    return `the entry does not name receipt ${want.receiptId} with its digest`;
  if (!has('delivery', want.delivery)) return `the entry does not name delivery ${want.delivery}`;
  return undefined;
}

function checkShape(input: unknown): asserts input is ExchangeEvidence {
  const bad = (m: string): never => fail({ kind: 'malformed', message: m });
  if (!isObject(input)) bad('the bundle is not a JSON object');
  const v = input as Partial<ExchangeEvidence>;
  if (v.format !== EXCHANGE_EVIDENCE_FORMAT) bad(`unknown evidence format ${String(v.format)}`);
  if (typeof v.exchange !== 'string') bad('exchange is missing');
  const excerpt = (x: unknown, what: string) => {
    if (!isObject(x)) bad(`${what} is missing`);
    const l = x as Partial<LogExcerpt>;
    if (typeof l.org !== 'string' || typeof l.origin !== 'string' || typeof l.keys !== 'string')
      bad(`${what}: org, origin or keys is missing`);
    if (typeof l.checkpoint !== 'string' || !isObject(l.signingKey) || !Array.isArray(l.entries))
      bad(`${what}: checkpoint, signingKey or entries is missing`);
    for (const e of l.entries ?? [])
      if (!isObject(e) || !Number.isSafeInteger(e.index) || typeof e.entry !== 'string' || !Array.isArray(e.proof))
        bad(`${what}: an entry is not {index, entry, proof}`);
  };
  excerpt(v.sender, 'sender');
  if (!Array.isArray(v.deliveries) || v.deliveries.length === 0) bad('the bundle holds no delivery');
  for (const d of v.deliveries ?? []) {
    if (!isObject(d) || typeof d.delivery !== 'string' || typeof d.recipient !== 'string')
      bad('a delivery lacks its id or recipient');
    if (typeof d.receipt !== 'string' || !isObject(d.receiptKey))
      bad(`delivery ${d.delivery}: receipt or receiptKey is missing`);
    if (d.recipientLog !== undefined) excerpt(d.recipientLog, `delivery ${d.delivery} recipientLog`);
  }
}

const sameKey = (a: EcJwk, b: EcJwk) => a.kty === b.kty && a.crv === b.crv && a.x === b.x && a.y === b.y;

function trusted(key: SigningJwk, deps: ExchangeVerifyDeps): boolean {
  return !deps.trustedSigningKeys || deps.trustedSigningKeys.some((k) => sameKey(k, key));
}

/** One organisation's part: its keys statement, its checkpoint and every entry's inclusion. Returns the entries verified. */
async function verifyExcerpt(
  x: LogExcerpt,
  deps: ExchangeVerifyDeps,
  hasher: Hasher,
  where: { delivery?: string },
): Promise<number> {
  const at = { org: x.org, ...where };
  if (!trusted(x.signingKey, deps))
    fail({ kind: 'keys-statement', ...at, message: `${x.org}'s signing key ${x.signingKey.kid} is not a pinned key` });
  let keys: EcJwk[];
  try {
    const claims = await verifyEs256Jws(x.keys, x.signingKey, AUDIT_KEYS_TYP, deps);
    if (claims.iss !== x.org) throw new Error(`it is issued by ${String(claims.iss)}`);
    if (claims.origin !== x.origin) throw new Error(`it names the log ${String(claims.origin)}`);
    if (!Array.isArray(claims.keys) || !claims.keys.every(isObject)) throw new Error('it lists no keys');
    keys = claims.keys as unknown as EcJwk[];
  } catch (err) {
    return fail({
      kind: 'keys-statement',
      ...at,
      message: `the audit-keys statement of ${x.org} does not hold: ${(err as Error).message}`,
    });
  }
  let checkpoint: Checkpoint;
  try {
    checkpoint = await verifyCheckpointNote(x.checkpoint, x.origin, keys, deps);
  } catch (err) {
    return fail({
      kind: 'checkpoint-signature',
      ...at,
      message: `the checkpoint of ${x.org} is not signed by its audit key: ${(err as Error).message}`,
    });
  }
  for (const e of x.entries) {
    let ok = false;
    try {
      const claimed = (JSON.parse(e.entry) as { index?: unknown }).index;
      verifyInclusion(
        hasher,
        e.index,
        checkpoint.size,
        hasher.leaf(utf8(e.entry)),
        e.proof.map((h) => fromBase64(String(h))),
        checkpoint.rootHash,
      );
      ok = claimed === e.index;
    } catch {
      ok = false;
    }
    if (!ok)
      fail({
        kind: 'proof-invalid',
        ...at,
        message: `entry ${e.index} of ${x.org}'s log or its inclusion proof was altered: it does not lead to the root signed at tree size ${checkpoint.size}`,
      });
  }
  return x.entries.length;
}

const entriesOf = (x: LogExcerpt) =>
  x.entries.flatMap((e) => {
    try {
      const v = JSON.parse(e.entry) as unknown;
      return isObject(v) ? [v] : [];
    } catch {
      return [];
    }
  });

const names = (entry: Record<string, unknown>, type: string, id: string) =>
  Array.isArray(entry.entity) && entry.entity.some((x) => isObject(x) && x.type === type && x.id === id);

export async function verifyExchangeEvidence(input: unknown, deps: ExchangeVerifyDeps): Promise<ExchangeReport> {
  const hasher = makeHasher(deps.sha256);
  const report: ExchangeReport = { ok: false, deliveriesVerified: 0, entriesVerified: 0, signingKeys: [] };
  try {
    checkShape(input);
    const ev = input;
    report.exchange = ev.exchange;
    report.entriesVerified += await verifyExcerpt(ev.sender, deps, hasher, {});
    report.signingKeys.push(`${ev.sender.org}: ${ev.sender.signingKey.kid}`);
    const senderEntries = entriesOf(ev.sender);
    for (const d of ev.deliveries) {
      const at = { org: d.recipient, delivery: d.delivery };
      if (!trusted(d.receiptKey, deps))
        fail({ kind: 'receipt-altered', ...at, message: `receipt key ${d.receiptKey.kid} is not a pinned key` });
      let receipt: Record<string, unknown>;
      try {
        receipt = await verifyEs256Jws(d.receipt, d.receiptKey, RECEIPT_TYP, deps);
        for (const [claim, want] of [
          ['iss', d.recipient],
          ['aud', ev.sender.org],
          ['delivery', d.delivery],
          ['status', 'accepted'],
        ] as const)
          if (receipt[claim] !== want)
            throw new Error(`its ${claim} is ${JSON.stringify(receipt[claim])}, not ${want}`);
        if (typeof receipt.jti !== 'string') throw new Error('it has no jti');
      } catch (err) {
        return fail({
          kind: 'receipt-altered',
          ...at,
          message: `the receipt of delivery ${d.delivery} was altered: ${(err as Error).message}`,
        });
      }
      const receiptId = receipt.jti as string;
      if (
        !senderEntries.some(
          (e) => e.type === 'delivery.receipt' && names(e, 'delivery', d.delivery) && names(e, 'receipt', receiptId),
        )
      )
        fail({
          kind: 'entry-missing',
          org: ev.sender.org,
          delivery: d.delivery,
          message: `the sender's delivery.receipt entry for delivery ${d.delivery} (receipt ${receiptId}) is missing`,
        });
      const log = d.recipientLog;
      if (!log)
        fail({
          kind: 'entry-missing',
          ...at,
          message: `the receiver's audit entry for receipt ${receiptId} is missing: ${d.recipient} has not proven it logged the receipt`,
        });
      if (log.org !== d.recipient)
        fail({ kind: 'keys-statement', ...at, message: `the receiver's log is of ${log.org}, not ${d.recipient}` });
      report.entriesVerified += await verifyExcerpt(log, deps, hasher, { delivery: d.delivery });
      const digest = digestOf(d.receipt, deps.sha256);
      const bound = log.entries.some(
        (e) =>
          receiptEntryProblem(e.entry, { index: e.index, receiptId, receiptDigest: digest, delivery: d.delivery }) ===
          undefined,
      );
      if (!bound)
        fail({
          kind: 'entry-missing',
          ...at,
          message: `the receiver's audit entry that binds receipt ${receiptId} (digest ${digest}) is missing`,
        });
      report.signingKeys.push(`${d.recipient}: ${d.receiptKey.kid}`);
      if (log.signingKey.kid !== d.receiptKey.kid) report.signingKeys.push(`${d.recipient}: ${log.signingKey.kid}`);
      report.deliveriesVerified++;
    }
    report.signingKeys = [...new Set(report.signingKeys)];
    report.ok = true;
  } catch (err) {
    if (!(err instanceof Fail)) throw err;
    report.problem = err.problem;
  }
  return report;
}

/** One line for humans: what was verified, or the first problem. */
export function describeExchangeReport(r: ExchangeReport): string {
  if (r.ok)
    return `OK: exchange ${r.exchange}: ${r.deliveriesVerified} deliveries, each with the receiver's signed receipt and its audit entry proven in the receiver's signed checkpoint; ${r.entriesVerified} entries proven in all (signing keys ${r.signingKeys.join(', ')})`;
  const p = r.problem;
  if (!p) throw new Error('a report that is not ok carries its problem');
  const where = p.delivery ? `delivery ${p.delivery}` : (p.org ?? 'bundle');
  return `TAMPERED (${p.kind}) at ${where}: ${p.message}`;
}

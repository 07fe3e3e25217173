/**
 * Offline verification of an evidence pack: every checkpoint signature, the
 * consistency chain between checkpoints, and every entry's inclusion. Pure
 * (no I/O, no node: imports): the CLI and the browser page both run this file,
 * each injecting its own SHA-256 and ECDSA verify.
 *
 * The first problem found is named: which entry (leaf index) or checkpoint,
 * and whether it was changed, missing, inserted, reordered, or badly signed.
 */
import { equalHash, makeHasher, verifyConsistency, verifyInclusion, type Hasher } from './merkle.ts';
import { fromBase64, noteKeyId, parseCheckpoint, parseSignedNote, utf8, type Checkpoint, type EcJwk } from './note.ts';

export const EVIDENCE_FORMAT = 'fhir-gateway-audit-evidence/v1';

export interface EvidenceKey extends EcJwk {
  kid: string;
  /** Signed-note key name (the log origin). */
  name: string;
}

export interface EvidenceCheckpoint {
  /** The signed note, verbatim. Size and root are read from its signed text only. */
  note: string;
  issuedAt: string;
  /** Consistency proof from the previous checkpoint of this pack (absent on the first). */
  consistency?: string[];
}

export interface EvidencePack {
  format: typeof EVIDENCE_FORMAT;
  origin: string;
  /** Leaf range [from, to). */
  from: number;
  to: number;
  /** Canonical JSON of leaves from..to-1, in order. */
  entries: string[];
  /** Checkpoints in issue order; a contiguous stretch of the log's checkpoint chain. */
  checkpoints: EvidenceCheckpoint[];
  /** Position in `checkpoints` of the one the inclusion proofs are against. */
  anchor: number;
  /** inclusionProofs[i]: base64 hashes proving entries[i] (leaf from+i) in checkpoints[anchor]. */
  inclusionProofs: string[][];
  keys: EvidenceKey[];
}

export type ProblemKind =
  'malformed' | 'bad-signature' | 'inconsistent' | 'changed' | 'missing' | 'inserted' | 'reordered';

export interface Problem {
  kind: ProblemKind;
  message: string;
  /** Leaf index of the first bad entry, when an entry is at fault. */
  index?: number;
  /** Position of the bad checkpoint in the pack, when a checkpoint is at fault. */
  checkpoint?: number;
}

export interface VerifyReport {
  ok: boolean;
  problem?: Problem;
  checkpointsVerified: number;
  entriesVerified: number;
  /** The signed tree head the entries were proven against. */
  anchor?: { size: number; rootHash: string; issuedAt: string };
  keyIds: string[];
}

export interface VerifyDeps {
  sha256: (data: Uint8Array) => Uint8Array;
  /** ECDSA P-256 / SHA-256 over `data`, DER signature. */
  verifySignature: (jwk: EcJwk, data: Uint8Array, derSignature: Uint8Array) => boolean | Promise<boolean>;
  /** Trust only these keys (pinned out of band) instead of the keys the pack carries. */
  trustedKeys?: EvidenceKey[];
  /**
   * Verdicts of inclusion checks, keyed by (index, proof, entry, anchor root). Share one map
   * when verifying many variants of one pack (the mutation test): unchanged entries are not re-hashed.
   */
  memo?: Map<string, boolean>;
}

class Fail extends Error {
  readonly problem: Problem;
  constructor(problem: Problem) {
    super(problem.message);
    this.problem = problem;
  }
}
// A declaration, so that the compiler knows code after a call is unreachable.
function fail(p: Problem): never {
  throw new Fail(p);
}

function checkShape(pack: unknown): asserts pack is EvidencePack {
  const p = pack as Partial<EvidencePack>;
  const bad = (m: string): never => fail({ kind: 'malformed', message: m });
  if (!p || typeof p !== 'object') bad('evidence pack is not a JSON object');
  if (p.format !== EVIDENCE_FORMAT) bad(`unknown evidence format ${String(p.format)}`);
  const { from, to } = p;
  if (typeof from !== 'number' || typeof to !== 'number' || !Number.isSafeInteger(from) || !Number.isSafeInteger(to))
    bad('from/to are not a valid leaf range');
  else if (from < 0 || to < from) bad('from/to are not a valid leaf range');
  if (!Array.isArray(p.entries) || !p.entries.every((e) => typeof e === 'string'))
    bad('entries must be an array of strings');
  if (!Array.isArray(p.checkpoints) || p.checkpoints.length === 0) bad('the pack holds no checkpoints');
  if (!Array.isArray(p.inclusionProofs) || !Array.isArray(p.keys)) bad('inclusionProofs and keys must be arrays');
  if (typeof p.origin !== 'string' || !Number.isSafeInteger(p.anchor)) bad('origin or anchor missing');
}

const hashes = (list: unknown, what: string): Uint8Array[] => {
  if (!Array.isArray(list)) return fail({ kind: 'malformed', message: `${what} is not an array of hashes` });
  return list.map((h) => {
    try {
      return fromBase64(String(h));
    } catch {
      return fail({ kind: 'malformed', message: `${what} holds a hash that is not base64` });
    }
  });
};

/**
 * The signatures and consistency chain of a run of checkpoints on their own,
 * for documents that carry their own entries (the disclosure report): the
 * parsed checkpoints, or the first problem.
 */
export async function verifyCheckpointChain(
  signed: Pick<EvidencePack, 'checkpoints' | 'origin' | 'keys'>,
  deps: VerifyDeps,
): Promise<{ checkpoints: Checkpoint[] } | { problem: Problem }> {
  try {
    if (!Array.isArray(signed.checkpoints) || signed.checkpoints.length === 0 || !Array.isArray(signed.keys))
      fail({ kind: 'malformed', message: 'no checkpoint or no key list' });
    return { checkpoints: await verifyCheckpoints(signed, deps, makeHasher(deps.sha256)) };
  } catch (err) {
    if (!(err instanceof Fail)) throw err;
    return { problem: err.problem };
  }
}

async function verifyCheckpoints(
  pack: Pick<EvidencePack, 'checkpoints' | 'origin' | 'keys'>,
  deps: VerifyDeps,
  hasher: Hasher,
): Promise<Checkpoint[]> {
  const keys = (deps.trustedKeys ?? pack.keys).map((k) => ({ jwk: k, name: k.name, id: noteKeyId(k, deps.sha256) }));
  const out: Checkpoint[] = [];
  for (const [i, cp] of pack.checkpoints.entries()) {
    let parsed: { body: string; signatures: { name: string; keyId: number; signature: Uint8Array }[] };
    let body: Checkpoint;
    try {
      parsed = parseSignedNote(String(cp?.note));
      body = parseCheckpoint(parsed.body);
    } catch (err) {
      return fail({
        kind: 'bad-signature',
        checkpoint: i,
        message: `checkpoint ${i} is not a valid signed note: ${(err as Error).message}`,
      });
    }
    let verified = false;
    for (const sig of parsed.signatures) {
      const key = keys.find((k) => k.name === sig.name && k.id === sig.keyId);
      if (!key) continue; // C2SP: ignore signatures by unknown keys
      if (!(await deps.verifySignature(key.jwk, utf8(parsed.body), sig.signature))) {
        return fail({
          kind: 'bad-signature',
          checkpoint: i,
          message: `checkpoint ${i} (tree size ${body.size}): signature by ${key.jwk.kid} does not verify`,
        });
      }
      verified = true;
    }
    if (!verified)
      return fail({
        kind: 'bad-signature',
        checkpoint: i,
        message: `checkpoint ${i} (tree size ${body.size}) carries no signature by a trusted audit key`,
      });
    if (body.origin !== pack.origin)
      return fail({
        kind: 'bad-signature',
        checkpoint: i,
        message: `checkpoint ${i} is for log "${body.origin}", not "${pack.origin}"`,
      });
    const prev = out[i - 1];
    if (prev) {
      if (body.size < prev.size)
        return fail({
          kind: 'inconsistent',
          checkpoint: i,
          message: `checkpoint ${i} shrinks the log from ${prev.size} to ${body.size}`,
        });
      try {
        if (body.size === prev.size) {
          if (!equalHash(body.rootHash, prev.rootHash)) throw new Error('two different roots for the same tree size');
        } else if (prev.size > 0) {
          verifyConsistency(
            hasher,
            prev.size,
            body.size,
            hashes(cp.consistency ?? [], `checkpoint ${i} consistency proof`),
            prev.rootHash,
            body.rootHash,
          );
        }
      } catch (err) {
        if (err instanceof Fail) throw err;
        return fail({
          kind: 'inconsistent',
          checkpoint: i,
          message: `checkpoint ${i} (size ${body.size}) is not consistent with checkpoint ${i - 1} (size ${prev.size}): ${(err as Error).message}`,
        });
      }
    }
    out.push(body);
  }
  return out;
}

/** The leaf index an entry claims for itself (canonical entries carry "index"), or undefined. */
function claimedIndex(entry: string): number | undefined {
  try {
    const v = JSON.parse(entry) as { index?: unknown };
    return Number.isSafeInteger(v.index) ? (v.index as number) : undefined;
  } catch {
    return undefined;
  }
}

function verifyEntries(pack: EvidencePack, anchor: Checkpoint, hasher: Hasher, memo?: Map<string, boolean>): void {
  const expected = pack.to - pack.from;
  const n = pack.entries.length;
  if (pack.inclusionProofs.length !== expected)
    fail({
      kind: 'malformed',
      message: `the pack has ${pack.inclusionProofs.length} inclusion proofs for ${expected} entries`,
    });
  const proofs: Array<Uint8Array[] | undefined> = [];
  const proofOf = (q: number) => (proofs[q] ??= hashes(pack.inclusionProofs[q], `inclusion proof ${pack.from + q}`));
  const rootKey = String(anchor.size) + String.fromCharCode(...anchor.rootHash);
  // Is `entries[pos]` the genuine leaf `index`, per the signed tree?
  const genuine = (pos: number, index: number): boolean => {
    const q = index - pack.from;
    const entry = pack.entries[pos];
    if (q < 0 || q >= expected || entry === undefined) return false;
    const check = (): boolean => {
      try {
        verifyInclusion(hasher, index, anchor.size, hasher.leaf(utf8(entry)), proofOf(q), anchor.rootHash);
        return true;
      } catch {
        return false;
      }
    };
    if (!memo) return check();
    const key = `${index}\u0000${rootKey}\u0000${String(pack.inclusionProofs[q])}\u0000${entry}`;
    let known = memo.get(key);
    if (known === undefined) memo.set(key, (known = check()));
    return known;
  };
  for (let pos = 0; pos < Math.max(n, expected); pos++) {
    const index = pack.from + pos;
    if (pos < n && pos < expected && genuine(pos, index)) continue;
    const claims = pack.entries.map(claimedIndex);
    // The first position where the pack departs from the signed log: say how.
    if (pos >= expected)
      fail({ kind: 'inserted', index: pack.to, message: `entry after the last leaf ${pack.to - 1} was inserted` });
    if (pos >= n) fail({ kind: 'missing', index, message: `entry ${index} is missing` });
    const claim = claims[pos];
    const isGenuineOther = claim !== undefined && claim !== index && genuine(pos, claim);
    const genuineElsewhere = claims.some((c, p) => p !== pos && c === index && genuine(p, index));
    if (n > expected) fail({ kind: 'inserted', index, message: `an entry was inserted before leaf ${index}` });
    if (n < expected) fail({ kind: 'missing', index, message: `entry ${index} is missing` });
    if (isGenuineOther || genuineElsewhere)
      fail({
        kind: 'reordered',
        index,
        message: `entry ${index} is out of order${isGenuineOther ? ` (found entry ${claim} in its place)` : ''}`,
      });
    fail({
      kind: 'changed',
      index,
      message: `entry ${index} was changed: it (or its inclusion proof) does not match the leaf the signed tree holds`,
    });
  }
}

export async function verifyEvidencePack(input: unknown, deps: VerifyDeps): Promise<VerifyReport> {
  const hasher = makeHasher(deps.sha256);
  const report: VerifyReport = { ok: false, checkpointsVerified: 0, entriesVerified: 0, keyIds: [] };
  try {
    checkShape(input);
    const pack = input;
    report.keyIds = (deps.trustedKeys ?? pack.keys).map((k) => String(k.kid));
    const checkpoints = await verifyCheckpoints(pack, deps, hasher);
    report.checkpointsVerified = checkpoints.length;
    const anchor = checkpoints[pack.anchor];
    const signed = pack.checkpoints[pack.anchor];
    if (!anchor || !signed || anchor.size < pack.to)
      return fail({ kind: 'malformed', message: `no checkpoint in the pack covers leaf ${pack.to - 1}` });
    // A checkpoint body is origin, size and root hash, one a line; verifyCheckpoints parsed it.
    const [, , rootHash] = signed.note.split('\n');
    if (rootHash === undefined) throw new Error('a verified checkpoint has a root hash line');
    report.anchor = { size: anchor.size, rootHash, issuedAt: signed.issuedAt };
    verifyEntries(pack, anchor, hasher, deps.memo);
    report.entriesVerified = pack.entries.length;
    report.ok = true;
  } catch (err) {
    if (!(err instanceof Fail)) throw err;
    report.problem = err.problem;
  }
  return report;
}

/** One line for humans: what was verified, or the first problem. */
export function describeReport(r: VerifyReport): string {
  if (r.ok)
    return `OK: ${r.entriesVerified} entries proven in the signed tree of size ${r.anchor?.size}; ${r.checkpointsVerified} checkpoint signatures and their consistency chain verified (keys ${r.keyIds.join(', ')})`;
  const p = r.problem;
  if (!p) throw new Error('a report that is not ok carries its problem');
  const where =
    p.index !== undefined ? `entry ${p.index}` : p.checkpoint !== undefined ? `checkpoint ${p.checkpoint}` : 'pack';
  return `TAMPERED (${p.kind}) at ${where}: ${p.message}`;
}

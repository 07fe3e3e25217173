import { randomUUID } from 'node:crypto';
import type { JWK } from 'jose';
import type pg from 'pg';
import type { GatewayContext } from '../gateway-context.ts';
import { GatewayError } from '../errors.ts';
import { isUuid } from '../ids.ts';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import { nodeHasher } from '../audit/hasher.ts';
import { nodeVerifyDeps } from '../audit/verify-node.ts';
import { equalHash, verifyConsistency, verifyInclusion } from '../audit/verifier/merkle.ts';
import { fromBase64, toBase64, utf8, type Checkpoint } from '../audit/verifier/note.ts';
import { digestOf, receiptEntryProblem, verifyCheckpointNote } from '../audit/verifier/exchange.ts';
import { inTransaction } from '../db/pool.ts';
import type { PartnerJwk } from '../directory/directory.ts';
import { scopeOfSignedItem, signingKidOf } from '../directory/signing-keys.ts';
import { verifyCompact } from '../jose/verify.ts';
import { duplicateMember } from '../jose/duplicate-members.ts';
import { readBounded } from '../net/read-bounded.ts';
import {
  EVIDENCE,
  evidenceUrl,
  signEvidenceRequest,
  type AuditKeysClaims,
  type EvidenceAnswer,
} from '../protocol/evidence.ts';
import { PROTOCOL } from '../protocol/wire.ts';
import { partnerLogState, type PartnerLogState } from './partner-log.ts';

export type PartnerCheckContext = Pick<
  GatewayContext,
  'config' | 'pool' | 'keyring' | 'directory' | 'fetch' | 'logger'
>;

export interface PartnerCheckResult {
  /** skipped: nothing due; checked: consistent, evidence kept; inconsistent: alarmed. */
  outcome: 'skipped' | 'checked' | 'inconsistent';
  treeSize?: number;
  proven: number;
  pending: number;
  unknown: number;
  reason?: string;
}

/** A delivered delivery to the partner whose receipt has no evidence yet (either kind: both tables share the columns). */
interface Lacking {
  id: string;
  exchangeId: string;
  kind: 'bundle' | 'imaging';
  receipt: string;
  receiptJti: string;
}

async function lackingEvidence(db: pg.Pool, partnerId: string, limit: number): Promise<Lacking[]> {
  const part = (table: string, kind: string) =>
    `SELECT id, exchange_id, receipt, receipt_jti, delivered_at, '${kind}' AS kind FROM ${table}
      WHERE partner_id = $1 AND state = 'delivered' AND receipt IS NOT NULL AND receipt_jti IS NOT NULL`;
  const { rows } = await db.query<{
    id: string;
    exchange_id: string;
    receipt: string;
    receipt_jti: string;
    kind: Lacking['kind'];
  }>(
    `SELECT d.* FROM (${part('deliveries', 'bundle')} UNION ALL ${part('imaging_deliveries', 'imaging')}) d
      WHERE NOT EXISTS (SELECT 1 FROM delivery_evidence e WHERE e.delivery_id = d.id)
      ORDER BY d.delivered_at LIMIT $2`,
    [partnerId, limit],
  );
  return rows.map((r) => ({
    id: r.id,
    exchangeId: r.exchange_id,
    kind: r.kind,
    receipt: r.receipt,
    receiptJti: r.receipt_jti.toLowerCase(),
  }));
}

/** A contradiction in what the partner signed: the alarm, never a retry. */
class Inconsistency extends Error {
  override name = 'Inconsistency';
}

function parseAnswer(text: string): EvidenceAnswer {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new GatewayError('UNPROCESSABLE', 'the evidence answer is not JSON');
  }
  if (duplicateMember(text) !== undefined)
    throw new GatewayError('UNPROCESSABLE', 'the evidence answer repeats a member');
  const a = v as Partial<EvidenceAnswer>;
  const strings = (x: unknown) => Array.isArray(x) && x.every((s) => typeof s === 'string');
  if (
    !a ||
    typeof a !== 'object' ||
    typeof a.origin !== 'string' ||
    typeof a.checkpoint !== 'string' ||
    typeof a.keys !== 'string' ||
    !strings(a.consistency) ||
    !strings(a.pending) ||
    !strings(a.unknown) ||
    !Array.isArray(a.receipts) ||
    !a.receipts.every(
      (r) =>
        r &&
        typeof r.receipt === 'string' &&
        Number.isSafeInteger(r.index) &&
        typeof r.entry === 'string' &&
        strings(r.proof),
    )
  )
    throw new GatewayError('UNPROCESSABLE', 'the evidence answer does not have the section 12 shape');
  return a as EvidenceAnswer;
}

const hashes = (list: string[]) => list.map((h) => fromBase64(h));

/** The kid of a receipt's ES256 signature (compact, or the first of a dual-signed one). */
const headerKid = (jws: string): string => {
  const kid = signingKidOf(jws);
  if (kid === undefined) throw new GatewayError('JWS_MALFORMED', 'the JWS names no kid');
  return kid;
};

/** The partner's audit keys, from its statement signed with a signing key it publishes (or published when it signed). */
async function auditKeysOf(
  ctx: PartnerCheckContext,
  partnerId: string,
  answer: EvidenceAnswer,
): Promise<{ keys: AuditKeysClaims['keys']; jwk: PartnerJwk }> {
  let jwk: PartnerJwk | undefined;
  const { payload } = await verifyCompact(
    answer.keys,
    async (header) => {
      if (!header.kid) throw new GatewayError('JWS_MALFORMED', 'the audit-keys statement names no kid');
      jwk = await ctx.directory.verificationKey(partnerId, header.kid, scopeOfSignedItem(answer.keys));
      return jwk as JWK;
    },
    { typ: EVIDENCE.auditKeysTyp, algorithms: [PROTOCOL.signatureAlg] },
  );
  const claims = JSON.parse(Buffer.from(payload).toString('utf8')) as Partial<AuditKeysClaims>;
  if (claims.iss !== partnerId || claims.origin !== answer.origin || !Array.isArray(claims.keys) || !jwk)
    throw new GatewayError('UNPROCESSABLE', `the audit-keys statement is not ${partnerId}'s for log ${answer.origin}`);
  return { keys: claims.keys, jwk };
}

/**
 * The newest checkpoint must extend the one we hold: the same origin, no
 * smaller, the same root at the same size, and a consistency proof that
 * verifies. Anything else is a forked or rewritten history.
 */
function checkExtends(known: PartnerLogState | undefined, cp: Checkpoint, answer: EvidenceAnswer): void {
  if (!known) return;
  if (cp.origin !== known.origin)
    throw new Inconsistency(`the log origin changed from ${known.origin} to ${cp.origin}`);
  if (cp.size < known.treeSize) throw new Inconsistency(`the log shrank from ${known.treeSize} to ${cp.size} entries`);
  if (cp.size === known.treeSize) {
    if (!equalHash(cp.rootHash, known.rootHash))
      throw new Inconsistency(`two different roots were signed for tree size ${cp.size} (a forked history)`);
    return;
  }
  try {
    verifyConsistency(nodeHasher, known.treeSize, cp.size, hashes(answer.consistency), known.rootHash, cp.rootHash);
  } catch (err) {
    throw new Inconsistency(
      `checkpoint ${cp.size} is not consistent with checkpoint ${known.treeSize} we hold (a rewritten history): ${(err as Error).message}`,
    );
  }
}

interface Proven {
  lacking: Lacking;
  index: number;
  entry: string;
  proof: Uint8Array[];
  receiptJwk: PartnerJwk;
}

/** Each receipt's entry binds our receipt (digest, delivery) and is included in the checkpoint. */
async function checkReceipts(
  ctx: PartnerCheckContext,
  partnerId: string,
  lacking: Map<string, Lacking>,
  answer: EvidenceAnswer,
  cp: Checkpoint,
): Promise<Proven[]> {
  const out: Proven[] = [];
  for (const r of answer.receipts) {
    const mine = lacking.get(r.receipt.toLowerCase());
    if (!mine) continue; // not asked for in this run: ignored
    const proof = hashes(r.proof);
    const problem = receiptEntryProblem(r.entry, {
      index: r.index,
      receiptId: mine.receiptJti,
      receiptDigest: digestOf(mine.receipt, nodeVerifyDeps.sha256),
      delivery: mine.id,
    });
    if (problem) throw new Inconsistency(`the partner's entry ${r.index} for receipt ${mine.receiptJti}: ${problem}`);
    try {
      verifyInclusion(nodeHasher, r.index, cp.size, nodeHasher.leaf(utf8(r.entry)), proof, cp.rootHash);
    } catch (err) {
      throw new Inconsistency(
        `the partner's entry ${r.index} for receipt ${mine.receiptJti} is not in its checkpoint ${cp.size}: ${(err as Error).message}`,
      );
    }
    const receiptJwk = await ctx.directory.verificationKey(
      partnerId,
      headerKid(mine.receipt),
      scopeOfSignedItem(mine.receipt),
    );
    out.push({ lacking: mine, index: r.index, entry: r.entry, proof, receiptJwk });
  }
  return out;
}

async function ask(ctx: PartnerCheckContext, endpoint: string, body: string): Promise<EvidenceAnswer> {
  const res = await ctx.fetch(evidenceUrl(endpoint), {
    method: 'POST',
    headers: { 'content-type': PROTOCOL.mediaType, accept: 'application/json' },
    body,
    redirect: 'manual',
    signal: AbortSignal.timeout(ctx.config.deliveryTimeout),
  });
  if (res.status !== 200) {
    await res.body?.cancel().catch(() => undefined);
    throw new GatewayError('UNAVAILABLE', `the partner answered the evidence request with HTTP ${res.status}`, {
      retryAfter: 60,
    });
  }
  return parseAnswer(await readBounded(res, EVIDENCE.maxAnswerBytes, 'the evidence answer'));
}

/**
 * One partner's evidence run (a durable job per partner, every minute): ask
 * for its newest checkpoint and a consistency proof from the one we hold,
 * and for the audit entries of up to 100 receipts that lack them; verify all
 * of it; keep the checkpoint and the proven entries, each audited. A
 * contradiction is alarmed (audit event, metric) and nothing is advanced.
 * Skipped when no receipt waits and the last check is younger than PARTNER_LOG_CHECK.
 */
export async function checkPartnerLog(
  ctx: PartnerCheckContext,
  partnerId: string,
  options: { force?: boolean } = {},
): Promise<PartnerCheckResult> {
  const result: PartnerCheckResult = { outcome: 'skipped', proven: 0, pending: 0, unknown: 0 };
  const partner = await ctx.directory.get(partnerId);
  if (!partner || partner.status !== 'active') return result;
  const known = await partnerLogState(ctx.pool, partnerId);
  const all = await lackingEvidence(ctx.pool, partnerId, EVIDENCE.maxReceipts);
  const askable = all.filter((l) => isUuid(l.receiptJti));
  const due = !known || Date.now() - known.checkedAt.getTime() >= ctx.config.partnerLogCheck;
  if (all.length === 0 && (!due || !known) && !options.force) return result;

  const signer = (await ctx.keyring.fresh()).signer();
  const request = await signEvidenceRequest(signer, {
    iss: ctx.config.org,
    aud: partnerId,
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    size: known?.treeSize ?? 0,
    receipts: askable.map((l) => l.receiptJti),
  });
  const answer = await ask(ctx, partner.endpoint, request);
  const { keys, jwk } = await auditKeysOf(ctx, partnerId, answer);
  let cp: Checkpoint;
  try {
    cp = await verifyCheckpointNote(answer.checkpoint, answer.origin, keys, nodeVerifyDeps);
  } catch (err) {
    throw new GatewayError('UNPROCESSABLE', `the partner's checkpoint does not verify: ${(err as Error).message}`);
  }
  result.treeSize = cp.size;
  let proven: Proven[];
  try {
    checkExtends(known, cp, answer);
    proven = await checkReceipts(ctx, partnerId, new Map(askable.map((l) => [l.receiptJti, l])), answer, cp);
  } catch (err) {
    if (!(err instanceof Inconsistency)) throw err;
    await raiseInconsistency(ctx, partnerId, known, cp, err.message);
    return { ...result, outcome: 'inconsistent', reason: err.message };
  }
  const unknown = new Set(answer.unknown.map((u) => u.toLowerCase()));
  const unprovable = all.filter((l) => !isUuid(l.receiptJti) || unknown.has(l.receiptJti));
  await keepEvidence(ctx, partnerId, known, cp, answer, jwk, proven, unprovable);
  return {
    outcome: 'checked',
    treeSize: cp.size,
    proven: proven.length,
    pending: answer.pending.length,
    unknown: unprovable.length,
  };
}

async function keepEvidence(
  ctx: PartnerCheckContext,
  partnerId: string,
  known: PartnerLogState | undefined,
  cp: Checkpoint,
  answer: EvidenceAnswer,
  statementJwk: PartnerJwk,
  proven: Proven[],
  unprovable: Lacking[],
): Promise<void> {
  const partner = { type: 'partner' as const, id: partnerId };
  await inTransaction(ctx.pool, async (db) => {
    const audit: AuditInput[] = [];
    const advanced = !known || cp.size > known.treeSize;
    let checkpointInserted = false;
    // One row per checkpoint accepted (each audited below); proofs against the one we hold point at its row.
    let checkpointId = advanced
      ? undefined
      : (
          await db.query<{ id: string }>(
            'SELECT id FROM partner_checkpoints WHERE partner_id = $1 AND tree_size = $2 ORDER BY id DESC LIMIT 1',
            [partnerId, cp.size],
          )
        ).rows[0]?.id;
    if (advanced || (proven.length > 0 && checkpointId === undefined)) {
      const { rows } = await db.query<{ id: string }>(
        `INSERT INTO partner_checkpoints (partner_id, tree_size, root_hash, note, keys_statement, statement_jwk, prev_size, consistency)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
        [
          partnerId,
          cp.size,
          Buffer.from(cp.rootHash),
          answer.checkpoint,
          answer.keys,
          JSON.stringify(statementJwk),
          known?.treeSize ?? null,
          hashes(answer.consistency).map((h) => Buffer.from(h)),
        ],
      );
      checkpointId = rows[0]?.id;
      checkpointInserted = true;
    }
    await db.query(
      `INSERT INTO partner_logs (partner_id, origin, tree_size, root_hash, checked_at) VALUES ($1, $2, $3, $4, now())
       ON CONFLICT (partner_id) DO UPDATE SET origin = $2, tree_size = $3, root_hash = $4, checked_at = now()`,
      [partnerId, cp.origin, cp.size, Buffer.from(cp.rootHash)],
    );
    if (checkpointInserted)
      audit.push({
        type: 'partner-log.checkpoint',
        outcome: 'success',
        agent: partner,
        detail: {
          origin: cp.origin,
          treeSize: cp.size,
          rootHash: toBase64(cp.rootHash),
          previousSize: known?.treeSize ?? null,
        },
      });
    for (const p of proven) {
      await db.query(
        `INSERT INTO delivery_evidence (delivery_id, partner_id, receipt_jti, state, audit_index, entry, checkpoint_id, proof, receipt_jwk)
         VALUES ($1, $2, $3, 'proven', $4, $5, $6, $7, $8) ON CONFLICT (delivery_id) DO NOTHING`,
        [
          p.lacking.id,
          partnerId,
          p.lacking.receiptJti,
          p.index,
          p.entry,
          checkpointId,
          p.proof.map((h) => Buffer.from(h)),
          JSON.stringify(p.receiptJwk),
        ],
      );
      audit.push({
        type: 'delivery.evidence',
        outcome: 'success',
        agent: partner,
        entity: [
          { type: 'delivery', id: p.lacking.id },
          { type: p.lacking.kind === 'imaging' ? 'imaging-exchange' : 'exchange', id: p.lacking.exchangeId },
          { type: 'receipt', id: p.lacking.receiptJti },
        ],
        detail: { partnerIndex: p.index, partnerTreeSize: cp.size },
      });
    }
    for (const u of unprovable)
      await db.query(
        `INSERT INTO delivery_evidence (delivery_id, partner_id, receipt_jti, state) VALUES ($1, $2, $3, 'unknown')
         ON CONFLICT (delivery_id) DO NOTHING`,
        [u.id, partnerId, u.receiptJti],
      );
    if (unprovable.length > 0)
      ctx.logger.warn(
        { partner: partnerId, receipts: unprovable.length },
        'the partner does not know some of our receipts: their delivery evidence stays without its audit entry',
      );
    await appendAudit(db, audit);
  });
}

/** The alarm: recorded once per episode on the partner's log row (the metric reads it) and audited then. */
async function raiseInconsistency(
  ctx: PartnerCheckContext,
  partnerId: string,
  known: PartnerLogState | undefined,
  cp: Checkpoint,
  reason: string,
): Promise<void> {
  ctx.logger.error(
    { partner: partnerId, reason },
    "partner audit log inconsistency: the partner's history contradicts what it signed",
  );
  await inTransaction(ctx.pool, async (db) => {
    const { rows } = await db.query<{ fresh: boolean }>(
      `INSERT INTO partner_logs (partner_id, origin, tree_size, root_hash, inconsistent_at, inconsistency)
       VALUES ($1, $2, $3, $4, now(), $5)
       ON CONFLICT (partner_id) DO UPDATE SET checked_at = now(),
         inconsistent_at = COALESCE(partner_logs.inconsistent_at, now()),
         inconsistency = COALESCE(partner_logs.inconsistency, $5)
       RETURNING (xmax = 0 OR inconsistent_at = now()) AS fresh`,
      [partnerId, cp.origin, cp.size, Buffer.from(cp.rootHash), reason.slice(0, 500)],
    );
    if (!rows[0]?.fresh) return;
    await appendAudit(db, [
      {
        type: 'partner-log.inconsistent',
        outcome: 'major-failure',
        agent: { type: 'partner', id: partnerId },
        detail: {
          reason: reason.slice(0, 500),
          origin: cp.origin,
          heldSize: known?.treeSize ?? null,
          heldRoot: known ? toBase64(known.rootHash) : null,
          treeSize: cp.size,
          rootHash: toBase64(cp.rootHash),
        },
      },
    ]);
  });
}

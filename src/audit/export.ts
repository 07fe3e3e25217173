import type { GatewayContext } from '../gateway-context.ts';
import { GatewayError } from '../errors.ts';
import {
  checkpointRange,
  committedSize,
  firstCheckpointCovering,
  issueCheckpoint,
  latestCheckpoint,
  logOrigin,
  type CheckpointRow,
} from './checkpoint.ts';
import { toBase64 } from './verifier/note.ts';
import { TreeReader } from './tree.ts';
import { EVIDENCE_FORMAT, type EvidenceCheckpoint, type EvidenceKey, type EvidencePack } from './verifier/verify.ts';
import { required } from '../required.ts';

/** Largest range one evidence pack may hold (ask for several packs beyond this). */
export const MAX_EXPORT = 50_000;

type Ctx = Pick<GatewayContext, 'pool' | 'keyring' | 'config'>;

const b64 = (list: Uint8Array[]) => list.map(toBase64);

export function toEvidenceCheckpoint(cp: CheckpointRow, withConsistency: boolean): EvidenceCheckpoint {
  return {
    note: cp.note,
    issuedAt: cp.issuedAt.toISOString(),
    ...(withConsistency ? { consistency: b64(cp.consistency) } : {}),
  };
}

/** Every audit key the gateway has held, named as in its checkpoint notes. */
export async function auditKeys(ctx: Ctx, origin: string): Promise<EvidenceKey[]> {
  const keyring = await ctx.keyring.fresh(10_000);
  return keyring.auditKeys().map((k) => ({
    kty: k.kty,
    crv: (k as { crv?: string }).crv,
    x: (k as { x?: string }).x,
    y: (k as { y?: string }).y,
    kid: k.kid,
    name: origin,
  }));
}

/**
 * An evidence pack for leaves [from, to): the entries, the checkpoint chain
 * from the last one before `from` to the first covering `to - 1` (the anchor),
 * the newest checkpoint with a consistency proof from the anchor, every entry's
 * inclusion proof in the anchor, and the audit public keys.
 * If no checkpoint covers the range yet, one is issued now.
 */
export async function buildEvidencePack(ctx: Ctx, from: number, to: number): Promise<EvidencePack> {
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 0 || to <= from) {
    throw new GatewayError('INVALID_VALUE', 'from and to must be whole numbers with 0 <= from < to', {
      expression: ['from', 'to'],
    });
  }
  if (to - from > MAX_EXPORT)
    throw new GatewayError('INVALID_VALUE', `at most ${MAX_EXPORT} entries per evidence pack`, { expression: ['to'] });
  const size = await committedSize(ctx.pool);
  if (to > size)
    throw new GatewayError('NOT_FOUND', `the audit log holds ${size} entries; to=${to} is beyond it`, {
      expression: ['to'],
    });
  let latest = await latestCheckpoint(ctx.pool);
  if (!latest || latest.treeSize < to) latest = await issueCheckpoint(ctx);
  const anchor = await firstCheckpointCovering(ctx.pool, to - 1);
  if (!latest || !anchor)
    throw new GatewayError('UNAVAILABLE', 'no checkpoint covers the range yet; retry shortly', { retryAfter: 5 });
  // Start the chain at the last checkpoint that does not yet include `from` (or the first one).
  const { rows } = await ctx.pool.query<{ seq: string }>(
    'SELECT COALESCE(MAX(seq), 0) AS seq FROM audit_checkpoints WHERE tree_size <= $1',
    [from],
  );
  const startSeq = Math.min(Number(required(rows[0], 'an aggregate query returns one row').seq), anchor.seq);
  // The checkpoints covering the range with their stored proofs, then the newest one proven
  // consistent with the anchor directly (not through every minute's checkpoint since).
  const chain = await checkpointRange(ctx.pool, startSeq, anchor.seq);
  const tail: EvidenceCheckpoint[] = [];
  if (latest.seq > anchor.seq) {
    const proof = await new TreeReader(ctx.pool, latest.treeSize).consistencyProof(anchor.treeSize);
    tail.push({ ...toEvidenceCheckpoint(latest, false), consistency: b64(proof) });
  }
  const { rows: entryRows } = await ctx.pool.query<{ entry: string }>(
    'SELECT entry FROM audit_log WHERE idx >= $1 AND idx < $2 ORDER BY idx',
    [from, to],
  );
  const tree = new TreeReader(ctx.pool, anchor.treeSize);
  const inclusionProofs: string[][] = [];
  for (let i = from; i < to; i++) inclusionProofs.push(b64(await tree.inclusionProof(i)));
  const origin = await logOrigin(ctx.pool, ctx.config.baseUrl);
  return {
    format: EVIDENCE_FORMAT,
    origin,
    from,
    to,
    entries: entryRows.map((r) => r.entry),
    checkpoints: [...chain.map((cp, i) => toEvidenceCheckpoint(cp, i > 0)), ...tail],
    anchor: anchor.seq - startSeq,
    inclusionProofs,
    keys: await auditKeys(ctx, origin),
  };
}

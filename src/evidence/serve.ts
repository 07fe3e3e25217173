import type { GatewayContext } from '../gateway-context.ts';
import { GatewayError } from '../errors.ts';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import { issueCheckpoint, latestCheckpoint, logOrigin } from '../audit/checkpoint.ts';
import { auditKeys } from '../audit/export.ts';
import { TreeReader } from '../audit/tree.ts';
import { toBase64 } from '../audit/verifier/note.ts';
import { keepRefusal, markRefusalAudited } from '../auth/audit.ts';
import { verifySignedJws } from '../protocol/signed-jws.ts';
import {
  checkEvidenceRequest,
  EVIDENCE,
  signAuditKeys,
  type EvidenceAnswer,
  type ReceiptEntryProof,
} from '../protocol/evidence.ts';

export type EvidenceServeContext = Pick<GatewayContext, 'config' | 'pool' | 'keyring' | 'directory' | 'logger'>;

export interface EvidenceRequestMeta {
  remoteAddress?: string;
  /** The partner a mutual-TLS peer certificate is bound to, when the route requires one. */
  tlsPartner?: string;
}

/**
 * Answer a partner's signed evidence request (docs/PROTOCOL.md section 12):
 * our newest checkpoint, the statement of our audit keys signed with our
 * signing key, a consistency proof from the size the partner holds, and for
 * each receipt we gave that partner its audit entry and inclusion proof.
 * Another partner's receipt is answered as unknown, exactly like a receipt
 * that does not exist. Served and refused requests are audited.
 */
export async function answerEvidenceRequest(
  ctx: EvidenceServeContext,
  body: string,
  meta: EvidenceRequestMeta = {},
): Promise<EvidenceAnswer> {
  const network = meta.remoteAddress ? { network: meta.remoteAddress } : {};
  let partner: string | undefined;
  try {
    const signed = await verifySignedJws(body.trim(), {
      directory: ctx.directory,
      typ: EVIDENCE.requestTyp,
      what: 'the evidence request',
    });
    partner = signed.iss;
    if (meta.tlsPartner !== undefined && meta.tlsPartner !== signed.iss)
      throw new GatewayError(
        'SENDER_MISMATCH',
        `the request is signed by ${signed.iss} but the TLS client certificate is bound to ${meta.tlsPartner}`,
        { expression: 'iss' },
      );
    const asked = checkEvidenceRequest(signed.claims, { org: ctx.config.org, clockSkewMs: ctx.config.clockSkew });
    const answer = await buildAnswer(ctx, signed.iss, asked.size, asked.receipts);
    await appendAudit(ctx.pool, [
      {
        type: 'evidence.served',
        outcome: 'success',
        agent: { type: 'partner', id: signed.iss, ...network },
        entity: answer.receipts.map((r) => ({ type: 'receipt', id: r.receipt })),
        detail: {
          treeSize: treeSizeOf(answer.checkpoint),
          knownSize: asked.size,
          proven: answer.receipts.length,
          pending: answer.pending.length,
          unknown: answer.unknown.length,
        },
      },
    ]);
    return answer;
  } catch (err) {
    if (err instanceof GatewayError && err.status < 500) {
      await auditEvidenceRefusal(ctx, err.code, err.status, { ...meta, partner });
      markRefusalAudited(err);
    }
    throw err;
  }
}

/** The one audit entry of a refused evidence request; who asked is known only once its signature verified. */
export async function auditEvidenceRefusal(
  ctx: Pick<EvidenceServeContext, 'pool' | 'logger'>,
  code: string,
  status: number,
  who: { partner?: string; remoteAddress?: string },
): Promise<void> {
  const network = who.remoteAddress ? { network: who.remoteAddress } : {};
  const entry: AuditInput = {
    type: 'evidence.refused',
    outcome: 'minor-failure',
    agent: who.partner
      ? { type: 'partner', id: who.partner, ...network }
      : { type: 'anonymous', id: 'unauthenticated', ...network },
    detail: { reason: code, status },
  };
  await keepRefusal(ctx.logger, entry.type, () => appendAudit(ctx.pool, [entry]));
}

const treeSizeOf = (note: string): number => Number(note.split('\n')[1]);

async function buildAnswer(
  ctx: EvidenceServeContext,
  partner: string,
  knownSize: number,
  receipts: string[],
): Promise<EvidenceAnswer> {
  const checkpoint = (await latestCheckpoint(ctx.pool)) ?? (await issueCheckpoint(ctx));
  if (!checkpoint)
    throw new GatewayError('UNAVAILABLE', 'no audit checkpoint is signed yet; retry shortly', { retryAfter: 60 });
  const size = checkpoint.treeSize;
  const tree = new TreeReader(ctx.pool, size);
  const { rows } = await ctx.pool.query<{ receipt_id: string; audit_idx: string | null; entry: string | null }>(
    `SELECT m.receipt_id, m.audit_idx, l.entry
       FROM inbox_messages m LEFT JOIN audit_log l ON l.idx = m.audit_idx AND m.audit_idx < $3
      WHERE m.sender = $1 AND m.receipt_id = ANY($2::uuid[])`,
    [partner, receipts, size],
  );
  const found = new Map(rows.map((r) => [r.receipt_id, r]));
  const proven: ReceiptEntryProof[] = [];
  const pending: string[] = [];
  const unknown: string[] = [];
  for (const id of receipts) {
    const r = found.get(id);
    if (!r || r.audit_idx === null) unknown.push(id);
    else if (r.entry === null) pending.push(id);
    else {
      const index = Number(r.audit_idx);
      proven.push({ receipt: id, index, entry: r.entry, proof: (await tree.inclusionProof(index)).map(toBase64) });
    }
  }
  const consistency = knownSize > 0 && knownSize < size ? (await tree.consistencyProof(knownSize)).map(toBase64) : [];
  const origin = await logOrigin(ctx.pool, ctx.config.baseUrl);
  const keyring = await ctx.keyring.fresh();
  const keys = await signAuditKeys(keyring.signer('sig'), {
    iss: ctx.config.org,
    iat: Math.floor(Date.now() / 1000),
    origin,
    keys: (await auditKeys(ctx, origin)).map(({ kty, crv, x, y, kid }) => ({ kty, crv, x, y, kid })),
  });
  return { origin, checkpoint: checkpoint.note, keys, consistency, receipts: proven, pending, unknown };
}

import { appendAudit, type AuditInput } from '../../audit/append.ts';
import { keepRefusal, markRefusalAudited } from '../../auth/audit.ts';
import { inTransaction } from '../../db/pool.ts';
import { GatewayError } from '../../errors.ts';
import type { GatewayContext } from '../../gateway-context.ts';
import { isUuid } from '../../ids.ts';
import { verifyProcessedReceipt } from '../../protocol/processed-receipt.ts';
import { requireReceiptForm } from '../../protocol/v2-acceptance.ts';
import { requireBoundSender } from '../../protocol/signed-jws.ts';
import { envelopeDigest, type ProcessedReceiptClaims } from '../../protocol/wire.ts';
import { DELIVERY_KINDS } from '../delivery-kinds.ts';
import { recordExchangeEvent } from '../exchange-events.ts';
import { answeredDelivery, requireRecorded, type AnsweredDelivery } from './answered-delivery.ts';

export type ProcessedIntakeContext = Pick<GatewayContext, 'config' | 'pool' | 'directory' | 'logger'>;

export interface PeerMeta {
  remoteAddress?: string | undefined;
  /** The partner a mutual-TLS peer certificate is bound to, when the route requires one. */
  tlsPartner?: string | undefined;
}

const mismatch = (member: string, message: string) =>
  new GatewayError('RECEIPT_MISMATCH', message, { expression: `receipt.${member}` });

/**
 * POST /inbox/processed: a partner's processed receipt for one of our
 * deliveries. Verified against the partner's published key, bound to what
 * we sent it (delivery, exchange, envelope digest, transport receipt), then
 * stored once with its exchange event and audit entry. A repeat changes
 * nothing and is answered the same. Every refusal is audited.
 */
export async function acceptProcessedReceipt(
  ctx: ProcessedIntakeContext,
  jws: string,
  meta: PeerMeta = {},
): Promise<{ duplicate: boolean }> {
  let claims: ProcessedReceiptClaims | undefined;
  try {
    claims = await verifyProcessedReceipt(jws, {
      directory: ctx.directory,
      org: ctx.config.org,
      clockSkewMs: ctx.config.clockSkew,
      maxAgeMs: ctx.config.inboxMaxAge,
    });
    requireBoundSender(meta, claims.iss);
    const sent = isUuid(claims.delivery) ? await answeredDelivery(ctx.pool, claims.delivery, claims.iss) : undefined;
    if (!sent || sent.exchangeId !== claims.exchange)
      throw mismatch(
        'delivery',
        `no delivery ${claims.delivery} of exchange ${claims.exchange} was sent to ${claims.iss}`,
      );
    if (sent.envelopeDigest !== claims.digest) throw mismatch('digest', 'digest is not that of the envelope sent');
    // In the delivery's version, as its transport receipt: a compact one for a v2 delivery is a downgrade.
    requireReceiptForm(sent.protocol, jws);
    // A delivery given up on has no transport receipt; one that has must be the receipt named.
    if (sent.receiptJti !== null && sent.receiptJti !== claims.receipt)
      throw mismatch('receipt', 'receipt is not the transport receipt of this delivery');
    requireRecorded(sent);
    return { duplicate: !(await store(ctx, sent, claims, jws)) };
  } catch (err) {
    if (err instanceof GatewayError && err.status < 500) {
      await auditProcessedRefusal(ctx, err, jws, claims, meta);
      markRefusalAudited(err);
    }
    throw err;
  }
}

/** Stored unless one is stored already (the first one stands); true when this call stored it. */
async function store(
  ctx: ProcessedIntakeContext,
  d: AnsweredDelivery,
  c: ProcessedReceiptClaims,
  jws: string,
): Promise<boolean> {
  const kind = Object.values(DELIVERY_KINDS).find((k) => k.table === d.table);
  return inTransaction(ctx.pool, async (db) => {
    const { rows } = await db.query(
      `UPDATE ${d.table} SET processed_receipt = $2, processed_receipt_jti = $3, processed_at = to_timestamp($4), processed_via = $5, updated_at = now()
        WHERE id = $1 AND processed_receipt IS NULL RETURNING id`,
      [d.id, jws, c.jti, c.processed_at, c.via],
    );
    if (rows.length === 0) return false;
    const at = new Date();
    await recordExchangeEvent(db, {
      exchangeId: d.exchangeId,
      deliveryId: d.id,
      kind: 'processed',
      at,
      detail: { receipt: c.jti, via: c.via },
    });
    await appendAudit(
      db,
      [
        {
          type: 'delivery.processed',
          outcome: 'success',
          agent: { type: 'partner', id: c.iss },
          entity: [
            { type: 'delivery', id: d.id },
            { type: kind?.exchangeEntity ?? 'exchange', id: d.exchangeId },
            { type: 'processed-receipt', id: c.jti, digest: envelopeDigest(jws) },
          ],
          detail: { via: c.via },
        },
      ],
      at,
    );
    return true;
  });
}

/**
 * The one audit entry of a refused processed receipt, also for a refusal
 * decided before it was read (media type, size). Who sent it is known only
 * once its signature verified; before that the peer is anonymous.
 */
export async function auditProcessedRefusal(
  ctx: Pick<ProcessedIntakeContext, 'pool' | 'logger'>,
  err: Pick<GatewayError, 'code' | 'status'>,
  jws: string | undefined,
  claims: ProcessedReceiptClaims | undefined,
  meta: PeerMeta,
): Promise<void> {
  const network = meta.remoteAddress ? { network: meta.remoteAddress } : {};
  const digest = jws === undefined ? undefined : envelopeDigest(jws);
  const entry: AuditInput = {
    type: 'processed-receipt.refused',
    outcome: 'minor-failure',
    agent: claims
      ? { type: 'partner', id: claims.iss, ...network }
      : { type: 'anonymous', id: 'unauthenticated', ...network },
    entity: [
      ...(digest ? [{ type: 'processed-receipt', id: claims?.jti ?? digest, digest }] : []),
      ...(claims && isUuid(claims.delivery) ? [{ type: 'delivery', id: claims.delivery }] : []),
    ],
    detail: { reason: err.code, status: err.status },
  };
  await keepRefusal(ctx.logger, entry.type, () => appendAudit(ctx.pool, [entry]));
}

import type { Queryable } from '../../db/pool.ts';
import { GatewayError } from '../../errors.ts';
import type { DeliveryTable } from '../idempotency.ts';
import type { ProtocolVersion } from '../../protocol/v2-acceptance.ts';

/** One of our deliveries, as a partner's answer about it (a processed receipt, a response) must name it. */
export interface AnsweredDelivery {
  table: DeliveryTable;
  id: string;
  exchangeId: string;
  state: 'pending' | 'delivered' | 'failed';
  /** What its receipts bind: the envelope's digest (for imaging, the manifest envelope's). */
  envelopeDigest: string;
  receiptJti: string | null;
  /** The MessageHeader.id of a message bundle, which a response names. */
  messageHeaderId: string | null;
  /** The protocol version it was sealed in (kept after retention purged the envelope). */
  protocol: ProtocolVersion;
}

/** The delivery `id` of either kind, if we sent it to `partner`. */
export async function answeredDelivery(
  db: Queryable,
  id: string,
  partner: string,
): Promise<AnsweredDelivery | undefined> {
  const { rows } = await db.query<{
    tbl: DeliveryTable;
    id: string;
    exchange_id: string;
    state: AnsweredDelivery['state'];
    digest: string;
    receipt_jti: string | null;
    message_header_id: string | null;
    protocol: ProtocolVersion;
  }>(
    `SELECT 'deliveries' AS tbl, d.id, d.exchange_id, d.state, d.envelope_digest AS digest, d.receipt_jti, e.message_header_id, d.protocol
       FROM deliveries d JOIN exchanges e ON e.id = d.exchange_id WHERE d.id = $1 AND d.partner_id = $2
     UNION ALL
     SELECT 'imaging_deliveries', d.id, d.exchange_id, d.state, d.manifest_digest, d.receipt_jti, NULL, d.protocol
       FROM imaging_deliveries d WHERE d.id = $1 AND d.partner_id = $2`,
    [id, partner],
  );
  const r = rows[0];
  return (
    r && {
      table: r.tbl,
      id: r.id,
      exchangeId: r.exchange_id,
      state: r.state,
      envelopeDigest: r.digest,
      receiptJti: r.receipt_jti,
      messageHeaderId: r.message_header_id,
      protocol: r.protocol,
    }
  );
}

/**
 * An answer about a delivery we have not yet recorded as delivered (its
 * transport receipt is on its way to our ledger) comes early: 503 with
 * Retry-After, and the partner sends it again, so the exchange's events keep
 * their order (delivered, then processed or response-received).
 */
export function requireRecorded(d: AnsweredDelivery): void {
  if (d.state === 'pending')
    throw new GatewayError('UNAVAILABLE', `delivery ${d.id} is not yet recorded as delivered; send this again`, {
      retryAfter: 1,
    });
}

import type pg from 'pg';
import { inTransaction } from '../db/pool.ts';
import { DELIVERY_KINDS } from './delivery-kinds.ts';
import { PROTOCOL } from '../protocol/wire.ts';
import type { AttemptClass } from '../net/retry-policy.ts';
import { transmit, type DeliveryContext } from './transmit.ts';
import { recordAttempt, type AttemptResult } from './attempt-ledger.ts';
import { unpackCompactJwe } from '../jose/packed-jwe.ts';
import { holdsDeliveries } from './partner-suspension.ts';
import { heldForDowngrade } from '../protocol/v2-negotiation.ts';
import type { ProtocolVersion } from '../protocol/v2-acceptance.ts';

export type { DeliveryContext } from './transmit.ts';

interface DeliveryRow {
  id: string;
  exchange_id: string;
  partner_id: string;
  /** Packed at rest (packed-jwe.ts) in delivery_envelopes; unpacked to the compact form when sent. */
  envelope: Buffer | null;
  envelope_digest: string;
  /** The protocol version it was sealed in (written with the envelope at intake). */
  protocol: ProtocolVersion;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  round_attempts: number;
  round_started_at: Date;
  next_attempt_at: Date | null;
}

/**
 * Deliver one sealed envelope: POST it, classify the answer, and record the
 * attempt, the new state, the audit entries and (for a retry) the next job
 * in one transaction. Retries are scheduled here with run_at, so backoff,
 * jitter, Retry-After and the horizon are ours, not the queue's.
 */
export async function deliver(ctx: DeliveryContext, deliveryId: string): Promise<AttemptClass | 'skipped'> {
  const { rows } = await ctx.pool.query<DeliveryRow>(
    'SELECT d.*, e.envelope FROM deliveries d LEFT JOIN delivery_envelopes e ON e.delivery_id = d.id WHERE d.id = $1',
    [deliveryId],
  );
  const d = rows[0];
  if (!d || d.state !== 'pending') return 'skipped';
  // Intake writes both in one statement and only a delivered one is purged: a pending one without it is damage.
  const packed = d.envelope;
  if (!packed) throw new Error(`delivery ${d.id} is pending but its sealed envelope is missing`);
  // A job that outlived a crash while a later attempt is already scheduled: leave it to that job.
  if (d.next_attempt_at && d.next_attempt_at.getTime() > Date.now() + 1_000) return 'skipped';
  const partner = await ctx.directory.get(d.partner_id);
  // A suspended partner, or a v1 envelope to one held after a downgrade: the delivery waits, pending,
  // until resumePartner or decideDowngrade queues it again.
  if (partner && (holdsDeliveries(partner) || heldForDowngrade(partner, d.protocol))) return 'skipped';
  const started = new Date();
  const result: AttemptResult = partner
    ? await transmit(ctx, {
        deliveryId: d.id,
        partner,
        url: partner.endpoint,
        contentType: PROTOCOL.mediaType,
        body: () => unpackCompactJwe(packed),
        signal: AbortSignal.timeout(ctx.config.deliveryTimeout),
        timeoutMs: ctx.config.deliveryTimeout,
        expected: () => ({ digest: d.envelope_digest }),
        protocol: d.protocol,
      })
    : { cls: 'permanent', status: null, error: 'partner removed from the directory' };
  await inTransaction(ctx.pool, (db) => record(ctx, db, d.id, result, started));
  return result.cls;
}

async function record(
  ctx: DeliveryContext,
  db: pg.PoolClient,
  id: string,
  r: AttemptResult,
  started: Date,
): Promise<void> {
  await recordAttempt(ctx, db, DELIVERY_KINDS.bundle, id, r, started);
}

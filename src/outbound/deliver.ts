import type { JWK } from 'jose';
import type pg from 'pg';
import type { GatewayContext } from '../runtime/gateway-context.ts';
import { inTransaction } from '../db/pool.ts';
import type { Partner } from '../directory/directory.ts';
import { scopeOfSignedItem } from '../directory/signing-keys.ts';
import { GatewayError } from '../errors.ts';
import { verifyReceipt } from '../protocol/receipt.ts';
import { enqueueDeliveries } from './intake-store.ts';
import { PROTOCOL } from '../protocol/wire.ts';
import { classifyStatus, parseRetryAfter, type AttemptClass } from '../net/retry-policy.ts';
import { recordAttempt, type AttemptLedger, type AttemptResult } from './attempt-ledger.ts';
import { readBounded } from '../net/read-bounded.ts';
import { unpackCompactJwe } from '../jose/packed-jwe.ts';

const MAX_ANSWER_BYTES = 64 * 1024;

export type DeliveryContext = Pick<GatewayContext, 'config' | 'pool' | 'directory' | 'fetch' | 'logger'>;

interface DeliveryRow {
  id: string;
  exchange_id: string;
  partner_id: string;
  /** Packed at rest (packed-jwe.ts); unpacked to the compact form when sent. */
  envelope: Buffer;
  envelope_digest: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  round_attempts: number;
  round_started_at: Date;
  next_attempt_at: Date | null;
}

/** One POST of the envelope to the partner's inbox, classified. */
async function transmit(ctx: DeliveryContext, d: DeliveryRow, partner: Partner): Promise<AttemptResult> {
  let res: Response;
  try {
    res = await ctx.fetch(partner.endpoint, {
      method: 'POST',
      headers: {
        'content-type': PROTOCOL.mediaType,
        'idempotency-key': d.id,
        accept: `${PROTOCOL.mediaType}, application/fhir+json`,
      },
      body: unpackCompactJwe(d.envelope),
      // Never follow a redirect with an envelope: the directory says where it goes.
      redirect: 'manual',
      signal: AbortSignal.timeout(ctx.config.deliveryTimeout),
    });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    const error =
      e.name === 'TimeoutError'
        ? `timeout after ${ctx.config.deliveryTimeout} ms`
        : `network ${e.cause?.code ?? e.name}`;
    return { cls: 'transient', status: null, error };
  }
  const cls = classifyStatus(res.status);
  if (cls !== 'ok') {
    await res.body?.cancel().catch(() => undefined);
    return {
      cls,
      status: res.status,
      error: `HTTP ${res.status}`,
      retryAfterMs: parseRetryAfter(res.headers.get('retry-after')),
    };
  }
  try {
    const text = (await readBounded(res, MAX_ANSWER_BYTES, 'the inbox answer')).trim();
    const claims = await verifyReceipt(
      text,
      async (header) => {
        if (!header.kid) throw new GatewayError('BAD_REQUEST', 'receipt header has no kid');
        return (await ctx.directory.verificationKey(partner.id, header.kid, scopeOfSignedItem(text))) as JWK;
      },
      { iss: partner.id, aud: ctx.config.org, delivery: d.id, digest: d.envelope_digest },
    );
    return { cls: 'delivered', status: res.status, error: null, receipt: { jws: text, jti: claims.jti } };
  } catch (err) {
    const e = err as Error & { name?: string };
    const reason =
      e.name === 'TimeoutError'
        ? `timeout reading the answer`
        : err instanceof GatewayError
          ? `invalid receipt: ${err.message}`
          : 'invalid receipt';
    return { cls: 'invalid-receipt', status: res.status, error: reason.slice(0, 200) };
  }
}

/**
 * Deliver one sealed envelope: POST it, classify the answer, and record the
 * attempt, the new state, the audit entries and (for a retry) the next job
 * in one transaction. Retries are scheduled here with run_at, so backoff,
 * jitter, Retry-After and the horizon are ours, not the queue's.
 */
export async function deliver(ctx: DeliveryContext, deliveryId: string): Promise<AttemptClass | 'skipped'> {
  const { rows } = await ctx.pool.query<DeliveryRow>('SELECT * FROM deliveries WHERE id = $1', [deliveryId]);
  const d = rows[0];
  if (!d || d.state !== 'pending') return 'skipped';
  // A job that outlived a crash while a later attempt is already scheduled: leave it to that job.
  if (d.next_attempt_at && d.next_attempt_at.getTime() > Date.now() + 1_000) return 'skipped';
  const partner = await ctx.directory.get(d.partner_id);
  const started = new Date();
  const result: AttemptResult = partner
    ? await transmit(ctx, d, partner)
    : { cls: 'permanent', status: null, error: 'partner removed from the directory' };
  await inTransaction(ctx.pool, (db) => record(ctx, db, d.id, result, started));
  return result.cls;
}

const BUNDLE_LEDGER: AttemptLedger = {
  table: 'deliveries',
  attemptsTable: 'delivery_attempts',
  exchangeEntity: 'exchange',
  detail: {},
  enqueue: enqueueDeliveries,
};

async function record(
  ctx: DeliveryContext,
  db: pg.PoolClient,
  id: string,
  r: AttemptResult,
  started: Date,
): Promise<void> {
  await recordAttempt(ctx, db, BUNDLE_LEDGER, id, r, started);
}

import type { JWK } from 'jose';
import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import type { GatewayContext } from '../context.ts';
import { inTransaction } from '../db/pool.ts';
import type { Partner } from '../directory/directory.ts';
import { GatewayError } from '../errors.ts';
import { verifyReceipt } from '../jose/receipt.ts';
import { enqueueDeliveries } from './intake-store.ts';
import { PROTOCOL } from './protocol.ts';
import { classifyStatus, nextDelayMs, parseRetryAfter, type AttemptClass } from './retry-policy.ts';
import { readBounded } from '../net/read-bounded.ts';

const MAX_ANSWER_BYTES = 64 * 1024;

export type DeliveryContext = Pick<GatewayContext, 'config' | 'pool' | 'directory' | 'fetch' | 'logger'>;

interface DeliveryRow {
  id: string;
  exchange_id: string;
  partner_id: string;
  envelope: string;
  envelope_digest: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  round_attempts: number;
  round_started_at: Date;
  next_attempt_at: Date | null;
}

interface AttemptResult {
  cls: AttemptClass;
  status: number | null;
  /** A short code, never content: "HTTP 503", "timeout", "network ECONNREFUSED", "receipt digest"... */
  error: string | null;
  retryAfterMs?: number;
  receipt?: { jws: string; jti: string };
}

/** One POST of the envelope to the partner's inbox, classified. */
async function transmit(ctx: DeliveryContext, d: DeliveryRow, partner: Partner): Promise<AttemptResult> {
  let res: Response;
  try {
    res = await ctx.fetch(partner.endpoint, {
      method: 'POST',
      headers: { 'content-type': PROTOCOL.mediaType, 'idempotency-key': d.id, accept: `${PROTOCOL.mediaType}, application/fhir+json` },
      body: d.envelope,
      // Never follow a redirect with an envelope: the directory says where it goes.
      redirect: 'manual',
      signal: AbortSignal.timeout(ctx.config.deliveryTimeout),
    });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    const error = e.name === 'TimeoutError' ? `timeout after ${ctx.config.deliveryTimeout} ms` : `network ${e.cause?.code ?? e.name}`;
    return { cls: 'transient', status: null, error };
  }
  const cls = classifyStatus(res.status);
  if (cls !== 'ok') {
    await res.body?.cancel().catch(() => undefined);
    return { cls, status: res.status, error: `HTTP ${res.status}`, retryAfterMs: parseRetryAfter(res.headers.get('retry-after')) };
  }
  try {
    const text = (await readBounded(res, MAX_ANSWER_BYTES, 'the inbox answer')).trim();
    const claims = await verifyReceipt(
      text,
      async (header) => {
        if (!header.kid) throw new GatewayError('BAD_REQUEST', 'receipt header has no kid');
        return (await ctx.directory.verificationKey(partner.id, header.kid)) as JWK;
      },
      { iss: partner.id, aud: ctx.config.org, delivery: d.id, digest: d.envelope_digest },
    );
    return { cls: 'delivered', status: res.status, error: null, receipt: { jws: text, jti: claims.jti } };
  } catch (err) {
    const e = err as Error & { name?: string };
    const reason = e.name === 'TimeoutError' ? `timeout reading the answer` : err instanceof GatewayError ? `invalid receipt: ${err.message}` : 'invalid receipt';
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
  const result: AttemptResult = partner ? await transmit(ctx, d, partner) : { cls: 'permanent', status: null, error: 'partner removed from the directory' };
  await inTransaction(ctx.pool, (db) => record(ctx, db, d.id, result, started));
  return result.cls;
}

async function record(ctx: DeliveryContext, db: pg.PoolClient, id: string, r: AttemptResult, started: Date): Promise<void> {
  const { rows } = await db.query<DeliveryRow>('SELECT * FROM deliveries WHERE id = $1 FOR UPDATE', [id]);
  const d = rows[0]!;
  const attempt = d.attempts + 1;
  const roundAttempts = d.round_attempts + 1;
  const now = Date.now();
  await db.query(
    'INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, outcome, http_status, error) VALUES ($1, $2, $3, $4, $5, $6, $7)',
    [id, attempt, started, now - started.getTime(), r.cls, r.status, r.error],
  );
  const entity = [{ type: 'delivery', id }, { type: 'exchange', id: d.exchange_id }];
  const partner = { type: 'partner' as const, id: d.partner_id };
  const audit: AuditInput[] = [
    { type: 'delivery.attempt', outcome: r.cls === 'delivered' ? 'success' : 'minor-failure', agent: partner, entity, detail: { attempt, result: r.cls, status: r.status, error: r.error } },
  ];
  if (d.state !== 'pending') {
    // Another run already settled it (duplicate job after a crash): keep the attempt, change nothing else.
    await db.query('UPDATE deliveries SET attempts = $2, updated_at = now() WHERE id = $1', [id, attempt]);
  } else if (r.cls === 'delivered') {
    await db.query(
      `UPDATE deliveries SET state = 'delivered', attempts = $2, round_attempts = $3, receipt = $4, receipt_jti = $5, delivered_at = now(), next_attempt_at = NULL, last_error = NULL, updated_at = now() WHERE id = $1`,
      [id, attempt, roundAttempts, r.receipt!.jws, r.receipt!.jti],
    );
    audit.push({ type: 'delivery.receipt', outcome: 'success', agent: partner, entity: [...entity, { type: 'receipt', id: r.receipt!.jti }], detail: { status: 'accepted' } });
  } else {
    const delay = nextDelayMs(roundAttempts, ctx.config.deliveryRetryBase, ctx.config.deliveryRetryMax, r.retryAfterMs);
    const nextAt = new Date(now + delay);
    const horizonEnd = d.round_started_at.getTime() + ctx.config.deliveryHorizon;
    const exhausted = roundAttempts >= ctx.config.deliveryMaxAttempts || nextAt.getTime() > horizonEnd;
    if (r.cls === 'permanent' || exhausted) {
      const why = r.cls === 'permanent' ? r.error : `${r.error}; gave up after ${roundAttempts} attempts`;
      await db.query(
        `UPDATE deliveries SET state = 'failed', attempts = $2, round_attempts = $3, last_error = $4, next_attempt_at = NULL, updated_at = now() WHERE id = $1`,
        [id, attempt, roundAttempts, why],
      );
      audit.push({ type: 'delivery.failed', outcome: 'serious-failure', agent: partner, entity, detail: { attempts: roundAttempts, reason: r.cls === 'permanent' ? 'permanent' : 'retries exhausted', status: r.status } });
    } else {
      await db.query(
        `UPDATE deliveries SET attempts = $2, round_attempts = $3, last_error = $4, next_attempt_at = $5, updated_at = now() WHERE id = $1`,
        [id, attempt, roundAttempts, r.error, nextAt],
      );
      await enqueueDeliveries(db, [id], nextAt);
    }
  }
  await appendAudit(db, audit);
  ctx.logger.info({ delivery: id, partner: d.partner_id, attempt, result: r.cls, status: r.status }, 'delivery attempt');
}

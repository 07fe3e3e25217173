import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { JWK } from 'jose';
import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import { inTransaction } from '../db/pool.ts';
import type { Partner } from '../directory/directory.ts';
import { GatewayError } from '../errors.ts';
import { verifyReceipt } from '../jose/receipt.ts';
import type { DeliveryContext } from './deliver.ts';
import { IMAGING } from './imaging-protocol.ts';
import { enqueueImagingDeliveries, getImagingDelivery, type ImagingDeliveryRow } from './imaging-store.ts';
import { PROTOCOL } from './protocol.ts';
import { classifyStatus, nextDelayMs, parseRetryAfter, type AttemptClass } from './retry-policy.ts';

const MAX_ANSWER_BYTES = 64 * 1024;
/** Slowest transfer rate tolerated before an attempt times out (added to DELIVERY_TIMEOUT). */
const MIN_BYTES_PER_SECOND = 1024 * 1024;

interface AttemptResult {
  cls: AttemptClass;
  status: number | null;
  error: string | null;
  retryAfterMs?: number;
  receipt?: { jws: string; jti: string };
}

/** The imaging inbox of a partner: its inbox URL + /imaging. */
export const imagingInboxOf = (partner: Pick<Partner, 'endpoint'>) => partner.endpoint.replace(/\/+$/, '') + IMAGING.inboxSuffix;

/** One delivery body: the manifest envelope, then the content JWE streamed from its file. */
async function* deliveryBody(d: ImagingDeliveryRow, boundary: string): AsyncGenerator<Buffer> {
  yield Buffer.from(`--${boundary}\r\nContent-Type: ${PROTOCOL.mediaType}\r\n\r\n${d.manifest_envelope}\r\n--${boundary}\r\nContent-Type: ${PROTOCOL.mediaType}\r\n\r\n`, 'latin1');
  for await (const chunk of createReadStream(d.content_path, { highWaterMark: 64 * 1024 })) yield chunk as Buffer;
  yield Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1');
}

async function readBounded(res: Response): Promise<string> {
  const reader = res.body?.getReader();
  if (!reader) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > MAX_ANSWER_BYTES) {
      await reader.cancel().catch(() => undefined);
      throw new GatewayError('UNPROCESSABLE', 'answer too large');
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function transmit(ctx: DeliveryContext, d: ImagingDeliveryRow, partner: Partner): Promise<AttemptResult> {
  const boundary = `imaging-${randomBytes(12).toString('hex')}`;
  const timeout = ctx.config.deliveryTimeout + Math.ceil((Number(d.content_jwe_length) / MIN_BYTES_PER_SECOND) * 1000);
  let res: Response;
  try {
    res = await ctx.fetch(imagingInboxOf(partner), {
      method: 'POST',
      headers: { 'content-type': `${IMAGING.deliveryType}; type="${PROTOCOL.mediaType}"; boundary=${boundary}`, 'idempotency-key': d.id, accept: `${PROTOCOL.mediaType}, application/fhir+json` },
      body: deliveryBody(d, boundary) as unknown as RequestInit['body'],
      duplex: 'half',
      redirect: 'manual',
      signal: AbortSignal.timeout(timeout),
    } as RequestInit);
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    if (e.cause && (e.cause as { code?: string }).code === 'ENOENT') return { cls: 'permanent', status: null, error: 'sealed content file missing' };
    return { cls: 'transient', status: null, error: e.name === 'TimeoutError' ? `timeout after ${timeout} ms` : `network ${e.cause?.code ?? e.name}` };
  }
  const cls = classifyStatus(res.status);
  if (cls !== 'ok') {
    await res.body?.cancel().catch(() => undefined);
    return { cls, status: res.status, error: `HTTP ${res.status}`, retryAfterMs: parseRetryAfter(res.headers.get('retry-after')) };
  }
  try {
    const text = (await readBounded(res)).trim();
    const claims = await verifyReceipt(text, async (header) => {
      if (!header.kid) throw new GatewayError('BAD_REQUEST', 'receipt header has no kid');
      return (await ctx.directory.verificationKey(partner.id, header.kid)) as JWK;
    }, { iss: partner.id, aud: ctx.config.org, delivery: d.id, digest: d.manifest_digest });
    // verifyReceipt has checked the signature; the payload's content_digest must name the content as sent.
    const payload = JSON.parse(Buffer.from(text.split('.')[1]!, 'base64url').toString('utf8')) as { content_digest?: unknown };
    if (payload.content_digest !== d.content_digest) throw new GatewayError('BAD_REQUEST', 'receipt content_digest does not match the content sent');
    return { cls: 'delivered', status: res.status, error: null, receipt: { jws: text, jti: claims.jti } };
  } catch (err) {
    return { cls: 'invalid-receipt', status: res.status, error: (err instanceof GatewayError ? `invalid receipt: ${err.message}` : 'invalid receipt').slice(0, 200) };
  }
}

/** Deliver one imaging delivery: stream it, classify the answer, record the attempt (and the retry) in one transaction. */
export async function deliverImaging(ctx: DeliveryContext, deliveryId: string): Promise<AttemptClass | 'skipped'> {
  const d = await getImagingDelivery(ctx.pool, deliveryId, false, true);
  if (!d || d.state !== 'pending') return 'skipped';
  if (d.next_attempt_at && d.next_attempt_at.getTime() > Date.now() + 1_000) return 'skipped';
  const partner = await ctx.directory.get(d.partner_id);
  const started = new Date();
  const result: AttemptResult = partner ? await transmit(ctx, d, partner) : { cls: 'permanent', status: null, error: 'partner removed from the directory' };
  const settled = await inTransaction(ctx.pool, (db) => record(ctx, db, d.id, result, started));
  // Delivered and receipted: the sealed copy has done its job.
  if (settled === 'delivered') await unlink(d.content_path).catch(() => undefined);
  return result.cls;
}

async function record(ctx: DeliveryContext, db: pg.PoolClient, id: string, r: AttemptResult, started: Date): Promise<string> {
  const d = (await getImagingDelivery(db, id, true))!;
  const attempt = d.attempts + 1;
  const roundAttempts = d.round_attempts + 1;
  const now = Date.now();
  await db.query(
    'INSERT INTO imaging_delivery_attempts (delivery_id, attempt, started_at, duration_ms, outcome, http_status, error) VALUES ($1, $2, $3, $4, $5, $6, $7)',
    [id, attempt, started, now - started.getTime(), r.cls, r.status, r.error],
  );
  const entity = [{ type: 'delivery', id }, { type: 'imaging-exchange', id: d.exchange_id }];
  const partner = { type: 'partner' as const, id: d.partner_id };
  const audit: AuditInput[] = [{ type: 'delivery.attempt', outcome: r.cls === 'delivered' ? 'success' : 'minor-failure', agent: partner, entity, detail: { content: 'imaging', attempt, result: r.cls, status: r.status, error: r.error } }];
  let state: string = d.state;
  if (d.state !== 'pending') {
    await db.query('UPDATE imaging_deliveries SET attempts = $2, updated_at = now() WHERE id = $1', [id, attempt]);
  } else if (r.cls === 'delivered') {
    state = 'delivered';
    await db.query(
      `UPDATE imaging_deliveries SET state = 'delivered', attempts = $2, round_attempts = $3, receipt = $4, receipt_jti = $5, delivered_at = now(), next_attempt_at = NULL, last_error = NULL, updated_at = now() WHERE id = $1`,
      [id, attempt, roundAttempts, r.receipt!.jws, r.receipt!.jti],
    );
    audit.push({ type: 'delivery.receipt', outcome: 'success', agent: partner, entity: [...entity, { type: 'receipt', id: r.receipt!.jti }], detail: { status: 'accepted' } });
  } else {
    const nextAt = new Date(now + nextDelayMs(roundAttempts, ctx.config.deliveryRetryBase, ctx.config.deliveryRetryMax, r.retryAfterMs));
    const exhausted = roundAttempts >= ctx.config.deliveryMaxAttempts || nextAt.getTime() > d.round_started_at.getTime() + ctx.config.deliveryHorizon;
    if (r.cls === 'permanent' || exhausted) {
      state = 'failed';
      await db.query(`UPDATE imaging_deliveries SET state = 'failed', attempts = $2, round_attempts = $3, last_error = $4, next_attempt_at = NULL, updated_at = now() WHERE id = $1`,
        [id, attempt, roundAttempts, r.cls === 'permanent' ? r.error : `${r.error}; gave up after ${roundAttempts} attempts`]);
      audit.push({ type: 'delivery.failed', outcome: 'serious-failure', agent: partner, entity, detail: { attempts: roundAttempts, reason: r.cls === 'permanent' ? 'permanent' : 'retries exhausted', status: r.status } });
    } else {
      await db.query(`UPDATE imaging_deliveries SET attempts = $2, round_attempts = $3, last_error = $4, next_attempt_at = $5, updated_at = now() WHERE id = $1`, [id, attempt, roundAttempts, r.error, nextAt]);
      await enqueueImagingDeliveries(db, [id], nextAt);
    }
  }
  await appendAudit(db, audit);
  ctx.logger.info({ delivery: id, partner: d.partner_id, attempt, result: r.cls, status: r.status }, 'imaging delivery attempt');
  return state;
}

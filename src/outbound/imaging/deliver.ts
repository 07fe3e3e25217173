import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { JWK } from 'jose';
import type pg from 'pg';
import { inTransaction } from '../../db/pool.ts';
import type { Partner } from '../../directory/directory.ts';
import { scopeOfSignedItem } from '../../directory/signing-keys.ts';
import { GatewayError } from '../../errors.ts';
import { verifyReceipt } from '../../protocol/receipt.ts';
import { readBounded } from '../../net/read-bounded.ts';
import type { DeliveryContext } from '../deliver.ts';
import { IMAGING } from '../../protocol/imaging-manifest.ts';
import { enqueueImagingDeliveries, getImagingDelivery, type ImagingDeliveryRow } from './store.ts';
import { PROTOCOL } from '../../protocol/wire.ts';
import { classifyStatus, parseRetryAfter, type AttemptClass } from '../../net/retry-policy.ts';
import { recordAttempt, type AttemptLedger, type AttemptResult } from '../attempt-ledger.ts';

const MAX_ANSWER_BYTES = 64 * 1024;
/** Slowest transfer rate tolerated before an attempt times out (added to DELIVERY_TIMEOUT). */
const MIN_BYTES_PER_SECOND = 1024 * 1024;

export type { AttemptResult } from '../attempt-ledger.ts';

/** The imaging inbox of a partner: its inbox URL + /imaging. */
export const imagingInboxOf = (partner: Pick<Partner, 'endpoint'>) =>
  partner.endpoint.replace(/\/+$/, '') + IMAGING.inboxSuffix;

const part = (boundary: string) => `--${boundary}\r\nContent-Type: ${PROTOCOL.mediaType}\r\n\r\n`;

/** The bytes before the content JWE: the announcement part, then the content part's header. */
export const deliveryHead = (boundary: string, announcement: string) =>
  Buffer.from(`${part(boundary)}${announcement}\r\n${part(boundary)}`, 'latin1');

/** The bytes after the content JWE: the manifest part and the closing boundary. */
export const deliveryTail = (boundary: string, manifest: string) =>
  Buffer.from(`\r\n${part(boundary)}${manifest}\r\n--${boundary}--\r\n`, 'latin1');

export const deliveryBoundary = () => `imaging-${randomBytes(12).toString('hex')}`;

export const deliveryTimeoutMs = (ctx: Pick<DeliveryContext, 'config'>, jweBytes: number) =>
  ctx.config.deliveryTimeout + Math.ceil((jweBytes / MIN_BYTES_PER_SECOND) * 1000);

/** A stored delivery's body: announcement, the content JWE streamed from its file, manifest. */
async function* storedBody(d: ImagingDeliveryRow, boundary: string): AsyncGenerator<Buffer> {
  yield deliveryHead(boundary, d.announcement);
  for await (const chunk of createReadStream(d.content_path, { highWaterMark: 256 * 1024 })) yield chunk as Buffer;
  yield deliveryTail(boundary, d.manifest_envelope);
}

export interface Expected {
  manifestDigest: string;
  contentDigest: string;
}

/**
 * One POST of a delivery body to the partner's imaging inbox, classified.
 * `expected` is read only once the answer is in (a live transmission learns
 * its digests while it sends).
 */
export async function transmit(
  ctx: DeliveryContext,
  deliveryId: string,
  partner: Partner,
  body: AsyncIterable<Buffer>,
  boundary: string,
  signal: AbortSignal,
  expected: () => Expected,
): Promise<AttemptResult> {
  let res: Response;
  try {
    res = await ctx.fetch(imagingInboxOf(partner), {
      method: 'POST',
      headers: {
        'content-type': `${IMAGING.deliveryType}; type="${PROTOCOL.mediaType}"; boundary=${boundary}`,
        'idempotency-key': deliveryId,
        accept: `${PROTOCOL.mediaType}, application/fhir+json`,
      },
      body: body as unknown as RequestInit['body'],
      duplex: 'half',
      redirect: 'manual',
      signal,
    } as RequestInit);
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    return {
      cls: 'transient',
      status: null,
      error:
        e.name === 'TimeoutError'
          ? 'timeout'
          : e.name === 'AbortError'
            ? 'aborted'
            : `network ${e.cause?.code ?? e.name}`,
    };
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
    const text = (await readBounded(res, MAX_ANSWER_BYTES, 'the receipt')).trim();
    const want = expected();
    const claims = await verifyReceipt(
      text,
      async (header) => {
        if (!header.kid) throw new GatewayError('BAD_REQUEST', 'receipt header has no kid');
        return (await ctx.directory.verificationKey(partner.id, header.kid, scopeOfSignedItem(text))) as JWK;
      },
      { iss: partner.id, aud: ctx.config.org, delivery: deliveryId, digest: want.manifestDigest },
    );
    // verifyReceipt has checked the signature; its content_digest must name the content as sent.
    const payload = JSON.parse(Buffer.from(text.split('.')[1]!, 'base64url').toString('utf8')) as {
      content_digest?: unknown;
    };
    if (payload.content_digest !== want.contentDigest)
      throw new GatewayError('BAD_REQUEST', 'receipt content_digest does not match the content sent');
    return { cls: 'delivered', status: res.status, error: null, receipt: { jws: text, jti: claims.jti } };
  } catch (err) {
    return {
      cls: 'invalid-receipt',
      status: res.status,
      error: (err instanceof GatewayError ? `invalid receipt: ${err.message}` : 'invalid receipt').slice(0, 200),
    };
  }
}

/** Deliver one stored imaging delivery (the job): stream it, classify the answer, record the attempt. */
export async function deliverImaging(ctx: DeliveryContext, deliveryId: string): Promise<AttemptClass | 'skipped'> {
  const d = await getImagingDelivery(ctx.pool, deliveryId, false, true);
  if (!d || d.state !== 'pending') return 'skipped';
  if (d.next_attempt_at && d.next_attempt_at.getTime() > Date.now() + 1_000) return 'skipped';
  const partner = await ctx.directory.get(d.partner_id);
  const started = new Date();
  const boundary = deliveryBoundary();
  const signal = AbortSignal.timeout(deliveryTimeoutMs(ctx, Number(d.content_jwe_length)));
  const result: AttemptResult = !partner
    ? { cls: 'permanent', status: null, error: 'partner removed from the directory' }
    : !existsSync(d.content_path)
      ? { cls: 'permanent', status: null, error: 'sealed content file missing' }
      : await transmit(ctx, d.id, partner, storedBody(d, boundary), boundary, signal, () => ({
          manifestDigest: d.manifest_digest,
          contentDigest: d.content_digest!,
        }));
  await recordImagingAttempt(ctx, d.id, result, started);
  return result.cls;
}

/**
 * Record an attempt (job or live transmission) in one transaction; a delivered content file is removed.
 * `settle: false` only logs it (a live transmission abandoned before the intake committed: the job, already
 * scheduled, is the retry).
 */
export async function recordImagingAttempt(
  ctx: DeliveryContext,
  id: string,
  result: AttemptResult,
  started: Date,
  settle = true,
): Promise<void> {
  const { state, path } = await inTransaction(ctx.pool, (db) => record(ctx, db, id, result, started, settle));
  if (state === 'delivered') await unlink(path).catch(() => undefined);
}

const IMAGING_LEDGER: AttemptLedger = {
  table: 'imaging_deliveries',
  attemptsTable: 'imaging_delivery_attempts',
  exchangeEntity: 'imaging-exchange',
  detail: { content: 'imaging' },
  enqueue: enqueueImagingDeliveries,
};

async function record(
  ctx: DeliveryContext,
  db: pg.PoolClient,
  id: string,
  r: AttemptResult,
  started: Date,
  settle: boolean,
): Promise<{ state: string; path: string }> {
  const { row, state } = await recordAttempt<ImagingDeliveryRow>(ctx, db, IMAGING_LEDGER, id, r, started, settle);
  return { state, path: row.content_path };
}

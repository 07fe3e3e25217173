import { randomBytes } from 'node:crypto';
import { required } from '../../required.ts';
import { createReadStream, existsSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type pg from 'pg';
import { inTransaction } from '../../db/pool.ts';
import type { Partner } from '../../directory/directory.ts';
import type { DeliveryContext } from '../deliver.ts';
import { IMAGING } from '../../protocol/imaging-manifest.ts';
import { getImagingDelivery, type ImagingDeliveryRow } from './store.ts';
import { DELIVERY_KINDS } from '../delivery-kinds.ts';
import { PROTOCOL } from '../../protocol/wire.ts';
import type { AttemptClass } from '../../net/retry-policy.ts';
import { transmit, type Transmission } from '../transmit.ts';
import type { ProtocolVersion } from '../../protocol/v2-acceptance.ts';
import { recordAttempt, type AttemptResult } from '../attempt-ledger.ts';
import { holdsDeliveries } from '../partner-suspension.ts';
import { heldForDowngrade } from '../../protocol/v2-negotiation.ts';

/** Slowest transfer rate tolerated before an attempt times out (added to DELIVERY_TIMEOUT). */
const MIN_BYTES_PER_SECOND = 1024 * 1024;

export type { AttemptResult } from '../attempt-ledger.ts';

/** The imaging inbox of a partner: its inbox URL + /imaging. */
export const imagingInboxOf = (partner: Pick<Partner, 'endpoint'>) =>
  partner.endpoint.replace(/\/+$/, '') + IMAGING.inboxSuffix;

const part = (boundary: string) => `--${boundary}\r\nContent-Type: ${PROTOCOL.mediaType}\r\n\r\n`;

/** The bytes before the content JWE: the announcement part (compact, or dual-signed JSON for v2), then the content part's header. */
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
 * A transmission to the partner's imaging inbox: `body` is called once, when the request is made. Its receipt
 * must be of the delivery's `protocol` and name the content sent (transmit.ts).
 */
export function imagingTransmission(
  deliveryId: string,
  partner: Partner,
  body: () => AsyncIterable<Buffer>,
  boundary: string,
  signal: AbortSignal,
  expected: () => Expected,
  protocol: ProtocolVersion,
  timeoutMs?: number,
): Transmission {
  return {
    deliveryId,
    partner,
    url: imagingInboxOf(partner),
    contentType: `${IMAGING.deliveryType}; type="${PROTOCOL.mediaType}"; boundary=${boundary}`,
    body,
    signal,
    timeoutMs,
    protocol,
    expected: () => {
      const e = expected();
      return { digest: e.manifestDigest, contentDigest: e.contentDigest };
    },
  };
}

/** Deliver one stored imaging delivery (the job): stream it, classify the answer, record the attempt. */
export async function deliverImaging(ctx: DeliveryContext, deliveryId: string): Promise<AttemptClass | 'skipped'> {
  const d = await getImagingDelivery(ctx.pool, deliveryId, false, true);
  if (!d || d.state !== 'pending') return 'skipped';
  if (d.next_attempt_at && d.next_attempt_at.getTime() > Date.now() + 1_000) return 'skipped';
  const partner = await ctx.directory.get(d.partner_id);
  // A suspended partner, or a v1 manifest to one held after a downgrade: the delivery waits, pending,
  // until resumePartner or decideDowngrade queues it again.
  if (partner && (holdsDeliveries(partner) || heldForDowngrade(partner, d.protocol))) return 'skipped';
  const started = new Date();
  const boundary = deliveryBoundary();
  const timeoutMs = deliveryTimeoutMs(ctx, Number(d.content_jwe_length));
  const signal = AbortSignal.timeout(timeoutMs);
  const result: AttemptResult = !partner
    ? { cls: 'permanent', status: null, error: 'partner removed from the directory' }
    : !existsSync(d.content_path)
      ? { cls: 'permanent', status: null, error: 'sealed content file missing' }
      : await transmit(
          ctx,
          imagingTransmission(
            d.id,
            partner,
            () => storedBody(d, boundary),
            boundary,
            signal,
            () => ({
              manifestDigest: d.manifest_digest,
              contentDigest: required(d.content_digest, 'the content digest loaded with the delivery'),
            }),
            d.protocol,
            timeoutMs,
          ),
        );
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

async function record(
  ctx: DeliveryContext,
  db: pg.PoolClient,
  id: string,
  r: AttemptResult,
  started: Date,
  settle: boolean,
): Promise<{ state: string; path: string }> {
  const { row, state } = await recordAttempt<ImagingDeliveryRow>(
    ctx,
    db,
    DELIVERY_KINDS.imaging,
    id,
    r,
    started,
    settle,
  );
  return { state, path: row.content_path };
}

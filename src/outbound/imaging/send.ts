import { GatewayError } from '../../errors.ts';
import { readBounded } from '../../net/read-bounded.ts';
import { classifyStatus, parseRetryAfter } from '../../net/retry-policy.ts';
import { PROTOCOL } from '../../protocol/wire.ts';
import type { AttemptResult } from '../attempt-ledger.ts';
import type { DeliveryContext } from '../deliver.ts';
import type { Transmission } from '../transmit.ts';
import { verifyImagingReceipt, type ImagingReceiptExpectation } from './receipt.ts';

/**
 * POST one imaging delivery and classify the answer like every delivery
 * (src/outbound/transmit.ts: retry policy, Retry-After, no redirects); a 2xx
 * counts only with a receipt of the delivery's own version that binds the
 * manifest and the content sent (receipt.ts).
 */
export interface ImagingTransmission extends Omit<Transmission, 'expected'> {
  /** Read only once the answer is in: a live transmission learns its digests while it sends. */
  expected: () => ImagingReceiptExpectation;
}

const MAX_ANSWER_BYTES = 64 * 1024;

function networkError(err: unknown, timeoutMs: number | undefined): string {
  const e = err as Error & { cause?: { code?: string } };
  if (e.name === 'TimeoutError') return timeoutMs === undefined ? 'timeout' : `timeout after ${timeoutMs} ms`;
  if (e.name === 'AbortError') return 'aborted';
  return `network ${e.cause?.code ?? e.name}`;
}

export async function sendImaging(ctx: DeliveryContext, t: ImagingTransmission): Promise<AttemptResult> {
  return { ...(await send(ctx, t)), url: t.url };
}

async function send(ctx: DeliveryContext, t: ImagingTransmission): Promise<AttemptResult> {
  let res: Response;
  try {
    res = await ctx.fetch(t.url, {
      method: 'POST',
      headers: {
        'content-type': t.contentType,
        'idempotency-key': t.deliveryId,
        accept: `${PROTOCOL.mediaType}, application/fhir+json`,
      },
      body: t.body() as unknown as RequestInit['body'],
      // A streamed body is sent half-duplex; a delivery never follows a redirect (the directory says where it goes).
      duplex: 'half',
      redirect: 'manual',
      signal: t.signal,
    } as RequestInit);
  } catch (err) {
    return { cls: 'transient', status: null, error: networkError(err, t.timeoutMs) };
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
    const claims = await verifyImagingReceipt(ctx, t.partner, text, t.expected());
    return { cls: 'delivered', status: res.status, error: null, receipt: { jws: text, jti: claims.jti } };
  } catch (err) {
    const reason =
      (err as Error).name === 'TimeoutError'
        ? 'timeout reading the answer'
        : err instanceof GatewayError
          ? `invalid receipt: ${err.message}`
          : 'invalid receipt';
    return { cls: 'invalid-receipt', status: res.status, error: reason.slice(0, 200) };
  }
}

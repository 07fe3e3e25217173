import type { Partner } from '../directory/directory.ts';
import { scopeOfSignedItem } from '../directory/signing-keys.ts';
import { GatewayError } from '../errors.ts';
import { readBounded } from '../net/read-bounded.ts';
import { classifyStatus, parseRetryAfter } from '../net/retry-policy.ts';
import { verifyReceipt } from '../protocol/receipt.ts';
import type { ReceiptClaims } from '../protocol/wire.ts';
import { requireReceiptForm, type ProtocolVersion } from '../protocol/v2-acceptance.ts';
import { PQ_SIGNATURE_ALG } from '../jose/pq/dual-jws.ts';
import { importPublicJwk } from '../jose/public-key.ts';
import { PROTOCOL } from '../protocol/wire.ts';
import type { AttemptResult } from './attempt-ledger.ts';
import type { GatewayContext } from '../gateway-context.ts';

const MAX_ANSWER_BYTES = 64 * 1024;

export type DeliveryContext = Pick<GatewayContext, 'config' | 'pool' | 'directory' | 'fetch' | 'logger'>;

/** What the signed receipt must bind: the digest of what was sent, and for imaging the content's digest too. */
export interface ReceiptBinding {
  digest: string;
  contentDigest?: string;
}

/** One POST of a delivery of either kind. */
export interface Transmission {
  deliveryId: string;
  partner: Partner;
  url: string;
  contentType: string;
  /** Called once, when the request is made: a bundle's envelope text or an imaging delivery's streamed parts. */
  body: () => string | AsyncIterable<Buffer>;
  signal: AbortSignal;
  /** The time budget behind `signal`, if it is a timeout (only for the error text). */
  timeoutMs?: number;
  /** Read only once the answer is in: a live imaging transmission learns its digests while it sends. */
  expected: () => ReceiptBinding;
  /** The delivery's protocol version, as recorded with it: the receipt's form must be its version's. */
  protocol: ProtocolVersion;
}

function networkError(err: unknown, timeoutMs: number | undefined): string {
  const e = err as Error & { cause?: { code?: string } };
  if (e.name === 'TimeoutError') return timeoutMs === undefined ? 'timeout' : `timeout after ${timeoutMs} ms`;
  if (e.name === 'AbortError') return 'aborted';
  return `network ${e.cause?.code ?? e.name}`;
}

/**
 * POST a delivery to the partner's inbox and classify the answer
 * (src/net/retry-policy.ts, with its Retry-After); a 2xx counts only with a
 * signed receipt that binds the bytes sent.
 */
export async function transmit(ctx: DeliveryContext, t: Transmission): Promise<AttemptResult> {
  return { ...(await send(ctx, t)), url: t.url };
}

async function send(ctx: DeliveryContext, t: Transmission): Promise<AttemptResult> {
  let res: Response;
  const protocol = t.protocol;
  try {
    const body = t.body();
    res = await ctx.fetch(t.url, {
      method: 'POST',
      headers: {
        'content-type': t.contentType,
        'idempotency-key': t.deliveryId,
        accept: `${PROTOCOL.mediaType}, application/fhir+json`,
      },
      body: body as unknown as RequestInit['body'],
      // A streamed body must be sent half-duplex.
      ...(typeof body === 'string' ? {} : { duplex: 'half' }),
      // Never follow a redirect with a delivery: the directory says where it goes.
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
    const want = t.expected();
    const claims = await verifyDeliveryReceipt(ctx, t.partner, text, {
      protocol,
      delivery: t.deliveryId,
      digest: want.digest,
      contentDigest: want.contentDigest,
    });
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

/** What a delivery's receipt must be and bind: its version's form, the delivery, what was sent (and for imaging, the content). */
export interface ReceiptExpected extends ReceiptBinding {
  protocol: ProtocolVersion;
  delivery: string;
}

/**
 * The recipient's receipt for one of our deliveries, checked in the
 * delivery's version: v1 a compact ES256 receipt, v2 a dual-signed one (a
 * compact receipt for it is refused as a downgrade), each signature by the
 * partner's key of its kind; every claim binds what was sent.
 */
export async function verifyDeliveryReceipt(
  ctx: Pick<DeliveryContext, 'directory' | 'config'>,
  partner: Partner,
  text: string,
  want: ReceiptExpected,
): Promise<ReceiptClaims & { content_digest?: string }> {
  requireReceiptForm(want.protocol, text);
  const claims: ReceiptClaims & { content_digest?: unknown } = await verifyReceipt(
    text,
    async (header) => {
      if (!header.kid) throw new GatewayError('JWS_MALFORMED', 'receipt header has no kid');
      const jwk = await ctx.directory.verificationKey(partner.id, header.kid, scopeOfSignedItem(text));
      // Each signature by a key of its own kind: ES256 by an EC key, ML-DSA-65 by an AKP key.
      if ((header.alg === PQ_SIGNATURE_ALG) !== (jwk.kty === 'AKP'))
        throw new GatewayError('JWS_SIGNATURE_INVALID', `receipt key ${header.kid} is not a ${header.alg} key`);
      return importPublicJwk(jwk);
    },
    { iss: partner.id, aud: ctx.config.org, delivery: want.delivery, digest: want.digest },
  );
  // The signature is checked: an imaging receipt's content_digest must name the content as sent.
  if (want.contentDigest !== undefined && claims.content_digest !== want.contentDigest)
    throw new GatewayError('RECEIPT_MISMATCH', 'receipt content_digest does not match the content sent');
  return claims as ReceiptClaims & { content_digest?: string };
}

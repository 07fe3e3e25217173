import { classifyStatus, parseRetryAfter } from './retry-policy.ts';

/** One POST's answer as the retry rule reads it: its class, status, error text and the peer's Retry-After. */
export interface PostOutcome {
  cls: 'ok' | 'transient' | 'permanent';
  status: number | null;
  error: string | null;
  retryAfterMs?: number;
}

/**
 * One POST of a small body to a peer, answered as a PostOutcome, never
 * thrown: the answer's body is discarded, a redirect is never followed (the
 * caller's address is the one meant), and a timeout or network failure is
 * transient.
 */
export async function postOnce(
  fetcher: typeof fetch,
  url: string,
  request: { contentType: string; idempotencyKey: string; body: string; timeoutMs: number },
): Promise<PostOutcome> {
  try {
    const res = await fetcher(url, {
      method: 'POST',
      headers: {
        'content-type': request.contentType,
        'idempotency-key': request.idempotencyKey,
        accept: 'application/fhir+json',
      },
      body: request.body,
      redirect: 'manual',
      signal: AbortSignal.timeout(request.timeoutMs),
    });
    await res.body?.cancel().catch(() => undefined);
    const cls = classifyStatus(res.status);
    return {
      cls,
      status: res.status,
      error: cls === 'ok' ? null : `HTTP ${res.status}`,
      retryAfterMs: parseRetryAfter(res.headers.get('retry-after')),
    };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    return {
      cls: 'transient',
      status: null,
      error: e.name === 'TimeoutError' ? 'timeout' : `network ${e.cause?.code ?? e.name}`,
    };
  }
}

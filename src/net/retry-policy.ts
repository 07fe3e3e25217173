/** Delay before the next attempt: exponential backoff with jitter, at least any Retry-After. */
export function nextDelayMs(
  roundAttempts: number,
  baseMs: number,
  maxMs: number,
  retryAfterMs: number | undefined,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, roundAttempts - 1));
  // "Equal jitter": half fixed, half random, so retries spread out yet never collapse to zero.
  const backoff = ceiling / 2 + random() * (ceiling / 2);
  return Math.max(backoff, retryAfterMs ?? 0);
}

/** How far one round of attempts goes: DELIVERY_RETRY_BASE, DELIVERY_RETRY_MAX, DELIVERY_MAX_ATTEMPTS, DELIVERY_HORIZON. */
export interface RetryBounds {
  deliveryRetryBase: number;
  deliveryRetryMax: number;
  deliveryMaxAttempts: number;
  deliveryHorizon: number;
}

/**
 * After a failed attempt: when the next one is due, or why the round is
 * over (its attempts are spent, or the next one would fall past the
 * horizon counted from the round's start).
 */
export function nextAttempt(
  roundAttempts: number,
  roundStartedAt: Date,
  bounds: RetryBounds,
  retryAfterMs: number | undefined,
  now = Date.now(),
): { at: Date } | { exhausted: 'attempts' | 'horizon' } {
  const at = new Date(
    now + nextDelayMs(roundAttempts, bounds.deliveryRetryBase, bounds.deliveryRetryMax, retryAfterMs),
  );
  if (roundAttempts >= bounds.deliveryMaxAttempts) return { exhausted: 'attempts' };
  if (at.getTime() > roundStartedAt.getTime() + bounds.deliveryHorizon) return { exhausted: 'horizon' };
  return { at };
}

/** Retry-After as milliseconds: delta-seconds or an HTTP-date (RFC 9110 §10.2.3); undefined if absent or invalid. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export type AttemptClass = 'delivered' | 'transient' | 'permanent' | 'invalid-receipt';

/** 408, 429 and 5xx are transient; other non-2xx answers are permanent. */
export function classifyStatus(status: number): 'ok' | 'transient' | 'permanent' {
  if (status >= 200 && status < 300) return 'ok';
  if (status === 408 || status === 429 || status >= 500) return 'transient';
  return 'permanent';
}

/** Why a send was given up, in the audit's words: refused for good, out of time, or out of attempts. */
export function giveUpReason(
  cls: 'ok' | 'transient' | 'permanent',
  next: ReturnType<typeof nextAttempt>,
): 'permanent' | 'expired' | 'retries exhausted' {
  if (cls === 'permanent') return 'permanent';
  return 'exhausted' in next && next.exhausted === 'horizon' ? 'expired' : 'retries exhausted';
}

import type { GatewayContext } from '../gateway-context.ts';
import { GatewayError } from '../errors.ts';

/**
 * Per-client token buckets, in memory. Each process keeps its own buckets, so
 * with N API processes a client may reach up to N times its limit: put the
 * limit at the load balancer too when scaling out (see docs/SECURITY.md).
 */
export interface RateDecision {
  allowed: boolean;
  /** Seconds until one request would be allowed again (when refused). */
  retryAfter: number;
}

interface Bucket {
  tokens: number;
  updated: number;
  perMinute: number;
}

export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>();
  readonly #defaultPerMinute: number;
  readonly #now: () => number;

  constructor(defaultPerMinute: number, now: () => number = Date.now) {
    this.#defaultPerMinute = defaultPerMinute;
    this.#now = now;
  }

  /** Take one request from the client's bucket; capacity = one minute's allowance. */
  take(key: string, perMinute = this.#defaultPerMinute): RateDecision {
    if (perMinute <= 0) return { allowed: true, retryAfter: 0 };
    const now = this.#now();
    let b = this.#buckets.get(key);
    if (!b || b.perMinute !== perMinute) {
      b = { tokens: perMinute, updated: now, perMinute };
      this.#buckets.set(key, b);
      if (this.#buckets.size > 100_000) this.#sweep(now);
    }
    const ratePerMs = perMinute / 60_000;
    b.tokens = Math.min(perMinute, b.tokens + (now - b.updated) * ratePerMs);
    b.updated = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { allowed: true, retryAfter: 0 };
    }
    return { allowed: false, retryAfter: Math.max(1, Math.ceil((1 - b.tokens) / ratePerMs / 1000)) };
  }

  /** Forget full buckets, so the map cannot grow without bound. */
  #sweep(now: number): void {
    for (const [key, b] of this.#buckets) {
      if (b.tokens + (now - b.updated) * (b.perMinute / 60_000) >= b.perMinute) this.#buckets.delete(key);
    }
  }
}

/** One limiter per gateway context (per process). */
const limiters = new WeakMap<GatewayContext, RateLimiter>();
function limiterFor(ctx: GatewayContext): RateLimiter {
  let l = limiters.get(ctx);
  if (!l) limiters.set(ctx, (l = new RateLimiter(ctx.config.rateLimit)));
  return l;
}

/** Take one request from a client's rate bucket, or throw 429 with Retry-After. */
export function chargeRate(ctx: GatewayContext, clientId: string, perMinute: number | null): void {
  const d = limiterFor(ctx).take(clientId, perMinute ?? ctx.config.rateLimit);
  if (!d.allowed)
    throw new GatewayError('RATE_LIMITED', `rate limit exceeded for client ${clientId}; retry in ${d.retryAfter} s`, {
      retryAfter: d.retryAfter,
    });
}

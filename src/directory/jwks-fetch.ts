import { GatewayError } from '../errors.ts';

/** The directory logs warnings only (a narrow type: src/gateway-context.ts depends on the directory, not the reverse). */
export interface DirectoryLogger {
  warn: (obj: object, msg?: string) => void;
}
import { freshnessMs } from './cache-control.ts';
import { checkJwks, type Jwks } from './jwks.ts';
import { readBounded } from '../net/read-bounded.ts';

export interface JwksLimits {
  /** Timeout of one fetch. */
  timeoutMs: number;
  /** Largest document accepted. */
  maxBytes: number;
  /** Most keys accepted in one document. */
  maxKeys: number;
  /** Least time between two refreshes forced by an unknown kid. */
  cooldownMs: number;
}

export const DEFAULT_JWKS_LIMITS: JwksLimits = { timeoutMs: 5_000, maxBytes: 65_536, maxKeys: 20, cooldownMs: 30_000 };

const DEFAULT_TTL = 5 * 60_000;
const MIN_TTL = 30_000;
const MAX_TTL = 24 * 3_600_000;

/** Told of each JWKS document fetched (to record it in the key-transparency log). */
export type FetchedListener = (uri: string, jwks: Jwks) => Promise<void>;

interface Entry {
  jwks: Jwks;
  fetchedAt: number;
  expiresAt: number;
}

/**
 * Fetches partners' JWKS documents: cached for the Cache-Control lifetime,
 * bounded in bytes, keys and time, one fetch in flight per URI, and served
 * stale when a refresh fails (a partner's brief outage must not stop us
 * verifying its receipts).
 */
export class JwksFetcher {
  readonly #fetch: typeof fetch;
  readonly #logger: DirectoryLogger;
  readonly #limits: JwksLimits;
  readonly #cache = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<Entry>>();
  readonly #onFetched: FetchedListener | undefined;

  /** `onFetched` sees every document fetched for a lookup (the refresh job records its own). */
  constructor(fetchImpl: typeof fetch, logger: DirectoryLogger, limits: JwksLimits, onFetched?: FetchedListener) {
    this.#fetch = fetchImpl;
    this.#logger = logger;
    this.#limits = limits;
    this.#onFetched = onFetched;
  }

  /** The cached document if fresh, else a fetched one. */
  async get(uri: string): Promise<Jwks> {
    const entry = this.#cache.get(uri);
    if (entry && entry.expiresAt > Date.now()) return entry.jwks;
    return (await this.#refresh(uri)).jwks;
  }

  /** Refetch unless the last fetch is younger than the cooldown (unknown-kid refresh). Returns true if refetched. */
  async refreshForUnknownKid(uri: string): Promise<boolean> {
    const entry = this.#cache.get(uri);
    if (entry && Date.now() - entry.fetchedAt < this.#limits.cooldownMs) return false;
    await this.#refresh(uri);
    return true;
  }

  /** Fetch now, whatever the cache says (the partner key refresh job); throws if the fetch fails, keeping the cached copy for others. */
  async refreshNow(uri: string): Promise<Jwks> {
    const before = this.#cache.get(uri);
    const entry = await this.#refresh(uri, false);
    // #load answers with the very same stale entry when the fetch failed.
    if (before && entry === before)
      throw new GatewayError('UNAVAILABLE', `JWKS at ${uri} could not be refreshed; the cached copy is still used`, {
        retryAfter: 30,
      });
    return entry.jwks;
  }

  async #notify(uri: string, jwks: Jwks): Promise<void> {
    try {
      await this.#onFetched?.(uri, jwks);
    } catch (err) {
      // The keys are still served from the fresh copy; the next fetch records again.
      this.#logger.warn({ uri, reason: (err as Error).message }, 'could not record the fetched JWKS');
    }
  }

  forget(uri: string): void {
    this.#cache.delete(uri);
  }

  #refresh(uri: string, notify = true): Promise<Entry> {
    let p = this.#inflight.get(uri);
    if (!p) {
      p = this.#load(uri, notify).finally(() => this.#inflight.delete(uri));
      this.#inflight.set(uri, p);
    }
    return p;
  }

  async #load(uri: string, notify: boolean): Promise<Entry> {
    const stale = this.#cache.get(uri);
    try {
      const res = await this.#fetch(uri, {
        headers: { accept: 'application/jwk-set+json, application/json' },
        redirect: 'error',
        signal: AbortSignal.timeout(this.#limits.timeoutMs),
      });
      if (!res.ok) {
        await res.body?.cancel().catch(() => undefined);
        throw new GatewayError('UNAVAILABLE', `JWKS at ${uri} answered HTTP ${res.status}`, { retryAfter: 30 });
      }
      const text = await readBounded(res, this.#limits.maxBytes, `JWKS at ${uri}`);
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch {
        throw new GatewayError('UNPROCESSABLE', `JWKS at ${uri} is not JSON`);
      }
      const jwks = checkJwks(doc, this.#limits.maxKeys, `JWKS at ${uri}`);
      const now = Date.now();
      const entry = {
        jwks,
        fetchedAt: now,
        expiresAt: now + freshnessMs(res.headers.get('cache-control'), DEFAULT_TTL, MIN_TTL, MAX_TTL),
      };
      this.#cache.set(uri, entry);
      if (notify) await this.#notify(uri, jwks);
      return entry;
    } catch (err) {
      const reason =
        err instanceof GatewayError
          ? err.message
          : (err as Error).name === 'TimeoutError'
            ? `timed out after ${this.#limits.timeoutMs} ms`
            : (err as Error).message;
      if (stale) {
        this.#logger.warn({ uri, reason }, 'JWKS refresh failed; serving the cached copy');
        // Back off: keep serving the stale copy for one cooldown before trying again.
        stale.fetchedAt = Date.now();
        stale.expiresAt = Date.now() + this.#limits.cooldownMs;
        return stale;
      }
      if (err instanceof GatewayError) throw err;
      throw new GatewayError('UNAVAILABLE', `JWKS at ${uri} could not be fetched: ${reason}`, {
        retryAfter: 30,
        cause: err,
      });
    }
  }
}

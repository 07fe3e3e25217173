import type { JWK } from 'jose';
import type { GatewayContext } from '../gateway-context.ts';
import { required } from '../required.ts';
import { checkPublicJwks, type ClientRecord } from './clients.ts';

interface CacheEntry {
  keys: JWK[];
  fetchedAt: number;
}

const TTL_MS = 5 * 60_000;
const caches = new WeakMap<GatewayContext, Map<string, CacheEntry>>();

/** Fetch a client's JWKS from its jwks_uri: bounded in time and size, no redirects. */
async function fetchJwks(ctx: GatewayContext, uri: string): Promise<JWK[]> {
  const res = await ctx.fetch(uri, {
    redirect: 'error',
    signal: AbortSignal.timeout(ctx.config.jwksTimeout),
    headers: { accept: 'application/json' },
  });
  if (!res.ok) throw new Error(`jwks_uri answered HTTP ${res.status}`);
  if (Number(res.headers.get('content-length') ?? 0) > ctx.config.jwksMaxBytes)
    throw new Error('jwks_uri document too large');
  const text = await res.text();
  if (text.length > ctx.config.jwksMaxBytes) throw new Error('jwks_uri document too large');
  return checkPublicJwks(JSON.parse(text)).keys;
}

/**
 * The client's public key with this kid. Inline JWKS are read from the row;
 * jwks_uri sets are cached for 5 minutes and refetched on an unknown kid at
 * most once per JWKS_REFRESH_COOLDOWN. Returns undefined for an unknown kid.
 */
export async function clientKey(ctx: GatewayContext, client: ClientRecord, kid: string): Promise<JWK | undefined> {
  if (client.jwks) return client.jwks.keys.find((k) => k.kid === kid);
  const uri = required(client.jwksUri ?? undefined, 'a jwks_uri on a client without inline keys');
  let cache = caches.get(ctx);
  if (!cache) caches.set(ctx, (cache = new Map()));
  const key = `${client.id} ${uri}`;
  const now = Date.now();
  let entry = cache.get(key);
  const stale = !entry || now - entry.fetchedAt > TTL_MS;
  const unknownKid = entry && !entry.keys.some((k) => k.kid === kid);
  if (!entry || stale || (unknownKid && now - entry.fetchedAt > ctx.config.jwksRefreshCooldown)) {
    entry = { keys: await fetchJwks(ctx, uri), fetchedAt: now };
    cache.set(key, entry);
  }
  return entry.keys.find((k) => k.kid === kid);
}

import { createPublicKey, type JsonWebKeyInput, type KeyObject } from 'node:crypto';

/** The public members of a partner's, client's or our own key; anything else in the JWK is ignored. */
export interface PublicJwkInput {
  kty?: unknown;
  crv?: unknown;
  x?: unknown;
  y?: unknown;
  n?: unknown;
  e?: unknown;
  /** RFC 9964 AKP keys (ML-DSA, and ML-KEM in the same form): the algorithm and the raw public key. */
  alg?: unknown;
  pub?: unknown;
}

/** Enough for every partner and client key in use; a stream of distinct keys evicts the least recently used. */
export const PUBLIC_KEY_CACHE_SIZE = 1000;

const cache = new Map<string, KeyObject>();

/** A JWK member as node:crypto takes it: absent, or a string (it throws a TypeError for any other type, as we do). */
function text(value: unknown, name: string): string | undefined {
  if (value === undefined || typeof value === 'string') return value;
  throw new TypeError(`The "key.${name}" property must be of type string`);
}

/**
 * The KeyObject for a public JWK (EC, RSA or AKP), parsed once: importing a JWK
 * costs more than the verification itself. Throws what node:crypto throws for
 * a malformed key or a point off its curve, and caches only keys that parsed.
 */
export function importPublicJwk(jwk: PublicJwkInput): KeyObject {
  const members: JsonWebKeyInput['key'] =
    jwk.kty === 'RSA'
      ? { kty: 'RSA', n: text(jwk.n, 'n'), e: text(jwk.e, 'e') }
      : jwk.kty === 'AKP'
        ? ({ kty: 'AKP', alg: text(jwk.alg, 'alg'), pub: text(jwk.pub, 'pub') } as JsonWebKeyInput['key'])
        : { kty: text(jwk.kty, 'kty'), crv: text(jwk.crv, 'crv'), x: text(jwk.x, 'x'), y: text(jwk.y, 'y') };
  const id = JSON.stringify(members);
  let key = cache.get(id);
  if (key) {
    cache.delete(id); // re-insert: Map order is the recency order
  } else {
    key = createPublicKey({ key: members, format: 'jwk' });
    if (cache.size >= PUBLIC_KEY_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
  }
  cache.set(id, key);
  return key;
}

/** How many keys the cache holds (for tests of its bound). */
export function publicKeyCacheSize(): number {
  return cache.size;
}

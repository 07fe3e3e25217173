import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { importPublicJwk, publicKeyCacheSize, PUBLIC_KEY_CACHE_SIZE } from '../../src/jose/public-key.ts';

const ecJwk = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });

describe('importPublicJwk', () => {
  it('returns the same KeyObject for the same public key, whatever else the JWK carries', () => {
    const jwk = ecJwk();
    const first = importPublicJwk(jwk);
    expect(importPublicJwk({ ...jwk })).toBe(first);
    expect(importPublicJwk({ ...jwk, kid: 'k1', use: 'sig', alg: 'ES256' } as never)).toBe(first);
    expect(first.asymmetricKeyType).toBe('ec');
    expect(first.export({ format: 'jwk' })).toEqual(jwk);
    expect(importPublicJwk(ecJwk())).not.toBe(first);
  });

  it('imports RSA keys by their public members', () => {
    const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
    const key = importPublicJwk(jwk);
    expect(key.asymmetricKeyType).toBe('rsa');
    expect(importPublicJwk({ ...jwk, kid: 'r' } as never)).toBe(key);
  });

  it('throws a TypeError, as node:crypto does, for a member that is not a string, and caches nothing', () => {
    const jwk = ecJwk();
    const before = publicKeyCacheSize();
    for (const bad of [
      { ...jwk, x: 123 },
      { ...jwk, crv: null },
      { ...jwk, kty: 5 },
      { kty: 'RSA', n: 1, e: 'AQAB' },
    ])
      expect(() => importPublicJwk(bad)).toThrow(TypeError);
    expect(publicKeyCacheSize()).toBe(before);
  });

  it('throws for a point off the curve and caches nothing for it', () => {
    const jwk = ecJwk();
    const before = publicKeyCacheSize();
    const off = { ...jwk, y: jwk.x };
    expect(() => importPublicJwk(off)).toThrow();
    expect(publicKeyCacheSize()).toBe(before);
  });

  it('stays bounded and evicts the least recently used key', () => {
    const kept = ecJwk();
    const keptKey = importPublicJwk(kept);
    const firstEvicted = ecJwk();
    const evictedKey = importPublicJwk(firstEvicted);
    for (let i = 0; i < PUBLIC_KEY_CACHE_SIZE + 10; i++) {
      importPublicJwk(ecJwk());
      if (i % 100 === 0) importPublicJwk(kept); // used often: never the oldest
      expect(publicKeyCacheSize()).toBeLessThanOrEqual(PUBLIC_KEY_CACHE_SIZE);
    }
    expect(publicKeyCacheSize()).toBe(PUBLIC_KEY_CACHE_SIZE);
    expect(importPublicJwk(kept)).toBe(keptKey);
    const reimported = importPublicJwk(firstEvicted);
    expect(reimported).not.toBe(evictedKey);
    expect(reimported.equals(evictedKey)).toBe(true);
  });
});

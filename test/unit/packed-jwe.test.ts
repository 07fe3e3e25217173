import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { packCompactJwe, unpackCompactJwe } from '../../src/jose/packed-jwe.ts';

const jwe = (ctLength: number) =>
  `${Buffer.from('{"alg":"ECDH-ES","enc":"A256GCM"}').toString('base64url')}..${randomBytes(12).toString('base64url')}.${randomBytes(ctLength).toString('base64url')}.${randomBytes(16).toString('base64url')}`;

describe('packed compact JWE (envelopes at rest)', () => {
  it.each([0, 1, 2, 3, 1000, 13_801])(
    'round-trips byte for byte and saves the base64url overhead (%i-byte ciphertext)',
    (n) => {
      const compact = jwe(n);
      const packed = packCompactJwe(compact);
      expect(unpackCompactJwe(packed)).toBe(compact);
      expect(packed.length).toBeLessThanOrEqual(compact.length); // base64url's third is gone
    },
  );

  it.each([
    ['four parts', 'a.b.c.d'],
    ['a 96-bit tag', `h..${randomBytes(12).toString('base64url')}.AAAA.${randomBytes(12).toString('base64url')}`],
    ['padding in the ciphertext', `h..iv.AA==.${randomBytes(16).toString('base64url')}`],
    ['non-canonical base64url (stray bits)', `h..iv.AB.${randomBytes(16).toString('base64url')}`],
    ['characters outside base64url', `h..iv.AA+A.${randomBytes(16).toString('base64url')}`],
  ])('refuses what would not come back identical: %s', (_why, value) => {
    expect(() => packCompactJwe(value)).toThrow(/packed form/);
  });

  it('refuses a truncated stored value', () => {
    const packed = packCompactJwe(jwe(50));
    expect(() => unpackCompactJwe(packed.subarray(0, 10))).toThrow(/truncated/);
  });
});

import { describe, expect, it } from 'vitest';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { kwpUnwrap, kwpWrap } from '../../hsm/aes-kwp.ts';

const key = randomBytes(32);
const ecb = (decipher: boolean) => (block: Buffer) => {
  const c = decipher ? createDecipheriv('aes-256-ecb', key, null) : createCipheriv('aes-256-ecb', key, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(block), c.final()]);
};
/** OpenSSL's RFC 5649 implementation, the reference. */
const reference = (plain: Buffer) => {
  const c = createCipheriv('id-aes256-wrap-pad', key, Buffer.from('a65959a6', 'hex'));
  return Buffer.concat([c.update(plain), c.final()]);
};

describe('RFC 5649 key wrap from AES block operations', () => {
  it('gives the bytes of OpenSSL id-aes256-wrap-pad, and unwraps them, for every length', () => {
    for (const length of [1, 7, 8, 9, 20, 32, 33, 64, 100]) {
      const plain = randomBytes(length);
      const wrapped = kwpWrap(plain, ecb(false));
      expect(wrapped.toString('hex'), `length ${length}`).toBe(reference(plain).toString('hex'));
      expect(kwpUnwrap(wrapped, ecb(true)).equals(plain)).toBe(true);
    }
  });

  it('refuses a wrapped key that was altered, truncated or wrapped by another key', () => {
    const wrapped = kwpWrap(randomBytes(64), ecb(false));
    for (const i of [0, 5, 20, wrapped.length - 1]) {
      const altered = Buffer.from(wrapped);
      altered[i]! ^= 1;
      expect(() => kwpUnwrap(altered, ecb(true)), `byte ${i}`).toThrow(/integrity/);
    }
    expect(() => kwpUnwrap(wrapped.subarray(0, wrapped.length - 8), ecb(true))).toThrow(/integrity/);
    expect(() => kwpUnwrap(wrapped.subarray(0, 12), ecb(true))).toThrow(/integrity/);
    const other = randomBytes(32);
    const otherEcb = (block: Buffer) => {
      const c = createDecipheriv('aes-256-ecb', other, null);
      c.setAutoPadding(false);
      return Buffer.concat([c.update(block), c.final()]);
    };
    expect(() => kwpUnwrap(wrapped, otherEcb)).toThrow(/integrity/);
  });
});

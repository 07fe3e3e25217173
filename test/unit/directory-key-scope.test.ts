import { describe, expect, it } from 'vitest';
import { scopeOfSignedItem } from '../../src/directory/signing-keys.ts';

const jws = (payload: unknown) =>
  ['{"alg":"ES256"}', JSON.stringify(payload)].map((p) => Buffer.from(p).toString('base64url')).join('.') + '.sig';

describe('scopeOfSignedItem: which partner keys may re-verify a signed item', () => {
  it('the keys published when the item says it was signed (its iat)', () => {
    expect(scopeOfSignedItem(jws({ iat: 1_700_000_000 }))).toEqual({ signedAt: new Date(1_700_000_000_000) });
  });

  it('current keys only without a usable iat', () => {
    expect(scopeOfSignedItem(jws({ iat: '1700000000' }))).toBe('current');
    expect(scopeOfSignedItem(jws({}))).toBe('current');
    expect(scopeOfSignedItem('not a jws')).toBe('current');
    expect(scopeOfSignedItem(`e30.${Buffer.from('not json').toString('base64url')}.sig`)).toBe('current');
  });
});

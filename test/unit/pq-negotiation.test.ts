import { describe, expect, it } from 'vitest';
import { envelopeVersion, heldForDowngrade, negotiate, pqKeysOf } from '../../src/protocol/v2-negotiation.ts';

const ec = { kty: 'EC', crv: 'P-256', x: 'x', y: 'y', kid: 'ec-enc', use: 'enc' };
const kem = { kty: 'AKP', alg: 'ML-KEM-768', pub: 'kem-pub', kid: 'kem-1', use: 'enc' };
const dsa = { kty: 'AKP', alg: 'ML-DSA-65', pub: 'dsa-pub', kid: 'dsa-1', use: 'sig' };
const fresh = { wasPq: false, operatorAllowsV1: false };
const seen = { wasPq: true, operatorAllowsV1: false };

describe('protocol version negotiation', () => {
  it('uses v2 exactly when both post-quantum keys are published', () => {
    expect(negotiate([ec, kem, dsa], fresh, 'hold')).toMatchObject({ version: 2, kem: { kid: 'kem-1' } });
    expect(negotiate([ec, kem], fresh, 'hold')).toEqual({ version: 1, downgraded: false });
    expect(negotiate([ec, dsa], fresh, 'hold')).toEqual({ version: 1, downgraded: false });
  });

  it('takes the first key of each kind and ignores AKP keys of other algorithms or uses', () => {
    const kem2 = { ...kem, kid: 'kem-2' };
    expect(pqKeysOf([kem, kem2, dsa])?.kem.kid).toBe('kem-1');
    expect(pqKeysOf([{ ...kem, alg: 'ML-KEM-512' }, dsa])).toBeUndefined();
    expect(pqKeysOf([{ ...kem, use: 'sig' }, dsa])).toBeUndefined();
    expect(pqKeysOf([kem, { ...dsa, pub: 42 }])).toBeUndefined();
  });

  it('holds a partner whose post-quantum keys disappeared, unless an operator or the policy allows v1', () => {
    expect(negotiate([ec], seen, 'hold')).toMatchObject({ version: 'held' });
    expect(negotiate([ec], { ...seen, operatorAllowsV1: true }, 'hold')).toEqual({ version: 1, downgraded: true });
    expect(negotiate([ec], seen, 'allow-v1')).toEqual({ version: 1, downgraded: true });
    expect(negotiate([ec, kem, dsa], seen, 'hold')).toMatchObject({ version: 2 });
  });
});

describe('the version an envelope asks for, read before anything is trusted', () => {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const tail = `.${Buffer.alloc(12).toString('base64url')}.${Buffer.alloc(32).toString('base64url')}.${Buffer.alloc(16).toString('base64url')}`;
  const hybrid = `${b64({ alg: 'x-ECDH-ES+ML-KEM-768', enc: 'A256GCM' })}.${tail}`;
  const v1 = `${b64({ alg: 'ECDH-ES', enc: 'A256GCM' })}.${tail}`;

  it("is 2 for the hybrid agreement and 1 otherwise, also from a stored envelope's first bytes", () => {
    expect(envelopeVersion(hybrid)).toBe(2);
    expect(envelopeVersion(v1)).toBe(1);
    expect(heldForDowngrade({ pqDowngrade: 'held' }, envelopeVersion(v1))).toBe(true);
    expect(heldForDowngrade({ pqDowngrade: 'held' }, envelopeVersion(hybrid))).toBe(false);
    expect(heldForDowngrade({ pqDowngrade: null }, envelopeVersion(v1))).toBe(false);
  });

  it('decodes no header longer than any this protocol writes: a hostile body is read as v1 and left to its opener', () => {
    // A body without any dot (30 MiB of one letter was decoded whole before) and a hybrid header padded past the bound.
    expect(envelopeVersion('a'.repeat(4 * 1024 * 1024))).toBe(1);
    const padded = `${b64({ alg: 'x-ECDH-ES+ML-KEM-768', enc: 'A256GCM', pad: 'x'.repeat(20_000) })}.${tail}`;
    expect(envelopeVersion(padded)).toBe(1);
    expect(envelopeVersion('')).toBe(1);
    expect(envelopeVersion('.x.y')).toBe(1);
  });
});

import { describe, expect, it } from 'vitest';
import { negotiate, pqKeysOf } from '../../src/protocol/v2-negotiation.ts';

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

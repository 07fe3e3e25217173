import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPublicKey, decapsulate, encapsulate, sign, verify } from 'node:crypto';
import { Hsm } from '../../hsm/hsm.ts';
import { pkcs11js } from '../../hsm/module.ts';
import { readAttributes } from '../../hsm/key-store.ts';
import { akpPublicJwk, generateWrappedPqKey, unwrapPqKey } from '../../src/keys/pq-keys.ts';
import { akpThumbprint } from '../../src/jose/thumbprint.ts';
import { createTestToken } from '../helpers/hsm.ts';

const publicKeyOf = (alg: string, pub: string) =>
  createPublicKey({ key: { kty: 'AKP', alg, pub } as never, format: 'jwk' });

describe('post-quantum private keys wrapped by an HSM AES key', () => {
  let hsm: Hsm;
  let wrappingKeyId: string;
  beforeAll(async () => {
    const token = createTestToken();
    hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 2 });
    wrappingKeyId = await hsm.generateWrappingKey('pq-wrap');
  });
  afterAll(() => hsm?.close());

  it('SoftHSM 2.6 offers no PKCS#11 3.2 ML-KEM/ML-DSA mechanisms, so the keys are software keys', async () => {
    expect(await hsm.offersPqMechanisms()).toBe(false);
  });

  it('the wrapping key may wrap and unwrap only, and its value never leaves the token', async () => {
    const attrs = await hsm.withSession((session, p11) => {
      const [handle] = (() => {
        p11.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_ID, value: Buffer.from(wrappingKeyId, 'hex') }]);
        const found = p11.C_FindObjects(session, 1);
        p11.C_FindObjectsFinal(session);
        return found;
      })();
      return readAttributes(p11, session, handle!, [
        pkcs11js.CKA_WRAP,
        pkcs11js.CKA_UNWRAP,
        pkcs11js.CKA_ENCRYPT,
        pkcs11js.CKA_DECRYPT,
        pkcs11js.CKA_SENSITIVE,
        pkcs11js.CKA_EXTRACTABLE,
      ]).map((b) => b[0] === 1);
    });
    expect(attrs).toEqual([true, true, false, false, true, false]);
  });

  it('an ML-KEM-768 key round-trips through the wrap: what is encapsulated to its public key decapsulates', async () => {
    const key = await generateWrappedPqKey(hsm, wrappingKeyId, 'ML-KEM-768');
    expect(key.kid).toBe(akpThumbprint({ alg: 'ML-KEM-768', pub: key.pub }));
    expect(akpPublicJwk(key)).toEqual({ kty: 'AKP', alg: 'ML-KEM-768', pub: key.pub, kid: key.kid, use: 'enc' });
    expect(key.wrapped).toHaveLength(64 + 8);
    const privateKey = await unwrapPqKey(hsm, key);
    const { sharedKey, ciphertext } = encapsulate(publicKeyOf('ML-KEM-768', key.pub));
    expect(decapsulate(privateKey, ciphertext).equals(sharedKey)).toBe(true);
  });

  it('an ML-DSA-65 key round-trips through the wrap: its signatures verify with the published key', async () => {
    const key = await generateWrappedPqKey(hsm, wrappingKeyId, 'ML-DSA-65');
    expect(akpPublicJwk(key).use).toBe('sig');
    const privateKey = await unwrapPqKey(hsm, key);
    const sig = sign(null, Buffer.from('receipt'), privateKey);
    expect(verify(null, Buffer.from('receipt'), publicKeyOf('ML-DSA-65', key.pub), sig)).toBe(true);
  });

  it('refuses altered wrapped bytes, another wrapping key, and a seed that is not the recorded key', async () => {
    const key = await generateWrappedPqKey(hsm, wrappingKeyId, 'ML-DSA-65');
    const altered = Buffer.from(key.wrapped);
    altered[5]! ^= 1;
    await expect(unwrapPqKey(hsm, { ...key, wrapped: altered })).rejects.toThrow();
    const other = await hsm.generateWrappingKey('pq-wrap-other');
    await expect(unwrapPqKey(hsm, { ...key, wrappingKeyId: other })).rejects.toThrow();
    const another = await generateWrappedPqKey(hsm, wrappingKeyId, 'ML-DSA-65');
    await expect(unwrapPqKey(hsm, { ...key, pub: another.pub })).rejects.toMatchObject({ code: 'INTERNAL' });
  });
});

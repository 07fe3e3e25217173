import { randomBytes } from 'node:crypto';
import type { Hsm } from '../../hsm/hsm.ts';
import { pkcs11js } from '../../hsm/module.ts';

const CURVE_OID: Record<string, Buffer> = {
  'P-256': Buffer.from('06082a8648ce3d030107', 'hex'),
  'P-384': Buffer.from('06052b81040022', 'hex'),
};

/**
 * Import a published test vector's EC private key (JWK with d) into the
 * token with C_CreateObject, as a sensitive, non-extractable derive key, so
 * vectors run through the same HSM key agreement as production envelopes.
 * Test-only: the gateway itself never imports private keys.
 */
export async function importEcDeriveKey(hsm: Hsm, jwk: { crv: string; d: string }): Promise<string> {
  const id = randomBytes(16);
  await hsm.withSession((session, p11) => {
    p11.C_CreateObject(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_DERIVE, value: true },
      { type: pkcs11js.CKA_SIGN, value: false },
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: 'test-vector-key' },
      { type: pkcs11js.CKA_EC_PARAMS, value: CURVE_OID[jwk.crv]! },
      { type: pkcs11js.CKA_VALUE, value: Buffer.from(jwk.d, 'base64url') },
    ]);
  });
  return id.toString('hex');
}

/** Every secret-key object visible to a session of the token (derived Z objects would show up here). */
export async function countSecretKeyObjects(hsm: Hsm): Promise<number> {
  return hsm.withSession((session, p11) => {
    p11.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY }]);
    try {
      let n = 0;
      for (;;) {
        const batch = p11.C_FindObjects(session, 64);
        if (batch.length === 0) return n;
        n += batch.length;
      }
    } finally {
      p11.C_FindObjectsFinal(session);
    }
  });
}

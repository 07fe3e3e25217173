import { createHash } from 'node:crypto';
import { pkcs11js, type Pkcs11 } from './module.ts';
import { readAttributes } from './key-store.ts';

/**
 * How the JOSE Concat KDF is run over the ECDH shared secret Z.
 * - 'in-token': Z is derived as a sensitive, non-extractable secret and fed to
 *   C_DigestKey, so only the per-message key ever leaves the HSM.
 * - 'extract': for tokens without C_DigestKey; Z is read out, used and zeroed.
 */
export type KdfMode = 'in-token' | 'extract';

const secretTemplate = (zBytes: number, extractable: boolean) => [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
  { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
  { type: pkcs11js.CKA_VALUE_LEN, value: zBytes },
  { type: pkcs11js.CKA_TOKEN, value: false },
  { type: pkcs11js.CKA_SENSITIVE, value: !extractable },
  { type: pkcs11js.CKA_EXTRACTABLE, value: extractable },
];

const counterBytes = (i: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(i);
  return b;
};

/**
 * ECDH (CKM_ECDH1_DERIVE, CKD_NULL): Z as a session object. Sensitive and
 * non-extractable unless `extractable`. The caller must destroy it.
 */
export function deriveSharedSecret(
  p11: Pkcs11,
  session: Buffer,
  privateKey: Buffer,
  peerPoint: Buffer,
  zBytes: number,
  extractable: boolean,
): Promise<Buffer> {
  const mechanism = {
    mechanism: pkcs11js.CKM_ECDH1_DERIVE,
    parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData: peerPoint },
  };
  return p11.C_DeriveKeyAsync(session, mechanism, privateKey, secretTemplate(zBytes, extractable));
}

/**
 * ECDH (CKM_ECDH1_DERIVE, CKD_NULL) with the token's private key, then the
 * NIST SP 800-56A Concat KDF with SHA-256 (RFC 7518 §4.6) over Z, or over
 * Z || secretSuffix for a hybrid agreement. The derived Z object is always
 * destroyed before returning.
 */
export async function deriveConcatKdf(
  p11: Pkcs11,
  session: Buffer,
  privateKey: Buffer,
  peerPoint: Buffer,
  zBytes: number,
  otherInfo: Buffer,
  keyBytes: number,
  mode: KdfMode,
  secretSuffix: Buffer = Buffer.alloc(0),
): Promise<Buffer> {
  const z = await deriveSharedSecret(p11, session, privateKey, peerPoint, zBytes, mode === 'extract');
  try {
    const rounds = Math.ceil(keyBytes / 32);
    const out: Buffer[] = [];
    if (mode === 'in-token') {
      for (let i = 1; i <= rounds; i++) {
        p11.C_DigestInit(session, { mechanism: pkcs11js.CKM_SHA256 });
        p11.C_DigestUpdate(session, counterBytes(i));
        p11.C_DigestKey(session, z);
        // A hybrid shared secret Z' = Z || T (SP 800-56C Rev. 2): T is not secret to the token, only to the wire.
        if (secretSuffix.length > 0) p11.C_DigestUpdate(session, secretSuffix);
        p11.C_DigestUpdate(session, otherInfo);
        out.push(p11.C_DigestFinal(session, Buffer.alloc(32)));
      }
    } else {
      const [secret] = readAttributes(p11, session, z, [pkcs11js.CKA_VALUE]);
      try {
        for (let i = 1; i <= rounds; i++) {
          out.push(
            createHash('sha256').update(counterBytes(i)).update(secret).update(secretSuffix).update(otherInfo).digest(),
          );
        }
      } finally {
        secret.fill(0);
      }
    }
    const all = Buffer.concat(out);
    const key = Buffer.from(all.subarray(0, keyBytes));
    all.fill(0);
    for (const part of out) part.fill(0);
    return key;
  } finally {
    p11.C_DestroyObject(session, z);
  }
}

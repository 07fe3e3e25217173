import { pkcs11js, type Pkcs11 } from './module.ts';
import { HsmError } from './errors.ts';

/** AES-GCM as the gateway uses it: a 96-bit IV chosen by the caller, a 128-bit tag appended to the ciphertext. */
export const GCM_IV_BYTES = 12;
const GCM_TAG_BYTES = 16;

/**
 * Generate a 256-bit AES key on the token: a token object, private,
 * sensitive and never extractable, that may only encrypt and decrypt (no
 * wrap, no unwrap, no derive), so its value never leaves the HSM.
 */
export function generateAesKey(p11: Pkcs11, session: Buffer, label: string, id: Buffer): Promise<Buffer> {
  return p11.C_GenerateKeyAsync(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: id },
    // Without CKA_SENSITIVE=true SoftHSM leaves it false; both are needed.
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_ENCRYPT, value: true },
    { type: pkcs11js.CKA_DECRYPT, value: true },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_SIGN, value: false },
    { type: pkcs11js.CKA_VERIFY, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
  ]);
}

function gcm(iv: Buffer, aad: Buffer): pkcs11js.Mechanism {
  if (iv.length !== GCM_IV_BYTES) throw new HsmError('HSM_OPERATION_FAILED', `AES-GCM needs a ${GCM_IV_BYTES}-byte IV`);
  const parameter: pkcs11js.AesGCM = {
    type: pkcs11js.CK_PARAMS_GCM,
    iv,
    aad,
    ivBits: GCM_IV_BYTES * 8,
    tagBits: GCM_TAG_BYTES * 8,
  };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}

/** CKM_AES_GCM encryption in the token: ciphertext with its tag appended. */
export function aesGcmEncrypt(
  p11: Pkcs11,
  session: Buffer,
  key: Buffer,
  iv: Buffer,
  aad: Buffer,
  plaintext: Buffer,
): Promise<Buffer> {
  p11.C_EncryptInit(session, gcm(iv, aad), key);
  return p11.C_EncryptAsync(session, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES));
}

/**
 * CKM_AES_GCM decryption in the token. A wrong tag, IV or associated data
 * fails inside the token (SoftHSM answers CKR_GENERAL_ERROR on a live
 * session, which the pool reports as HSM_OPERATION_FAILED, not an outage).
 */
export function aesGcmDecrypt(
  p11: Pkcs11,
  session: Buffer,
  key: Buffer,
  iv: Buffer,
  aad: Buffer,
  ciphertext: Buffer,
): Promise<Buffer> {
  if (ciphertext.length < GCM_TAG_BYTES) throw new HsmError('HSM_OPERATION_FAILED', 'AES-GCM ciphertext too short');
  p11.C_DecryptInit(session, gcm(iv, aad), key);
  return p11.C_DecryptAsync(session, ciphertext, Buffer.alloc(ciphertext.length));
}

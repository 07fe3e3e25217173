import { pkcs11js, type Pkcs11 } from './module.ts';
import { readAttributes } from './key-store.ts';
import { HsmError } from './errors.ts';
import { kwpUnwrap, kwpWrap } from './aes-kwp.ts';

/**
 * Software keys kept only wrapped by the token: an AES-256 key that may wrap
 * and unwrap (CKM_AES_KEY_WRAP_PAD, RFC 5649) and nothing else. Used for the
 * post-quantum private keys while the token has no ML-KEM/ML-DSA mechanisms.
 *
 * Through a module that does not carry CKM_AES_KEY_WRAP_PAD (p11-kit's
 * remoting) the same RFC 5649 wrap is composed from CKM_AES_ECB block
 * operations in the token (aes-kwp.ts), so that key may also encrypt and
 * decrypt: no more than wrap and unwrap already allow, since an unwrapped
 * carrier is readable by the session that made it.
 */
const WRAP_MECHANISM = { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD };
const BLOCK_MECHANISM = { mechanism: pkcs11js.CKM_AES_ECB };

/** Whether the module wraps with CKM_AES_KEY_WRAP_PAD itself; otherwise the wrap is composed from AES-ECB. */
export function wrapsNatively(p11: Pkcs11, session: Buffer): boolean {
  return p11.C_GetMechanismList(p11.C_GetSessionInfo(session).slotID).includes(pkcs11js.CKM_AES_KEY_WRAP_PAD);
}

/** PKCS#11 3.2 mechanism types (pkcs11t.h), not yet in pkcs11js. */
export const PQ_MECHANISMS = { mlKemKeyPairGen: 0x0f, mlKem: 0x17, mlDsaKeyPairGen: 0x1c, mlDsa: 0x1d } as const;

export function generateWrappingKey(
  p11: Pkcs11,
  session: Buffer,
  label: string,
  id: Buffer,
  native: boolean,
): Promise<Buffer> {
  return p11.C_GenerateKeyAsync(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: id },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_WRAP, value: true },
    { type: pkcs11js.CKA_UNWRAP, value: true },
    { type: pkcs11js.CKA_ENCRYPT, value: !native },
    { type: pkcs11js.CKA_DECRYPT, value: !native },
    { type: pkcs11js.CKA_SIGN, value: false },
    { type: pkcs11js.CKA_VERIFY, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
  ]);
}

/** A session-only generic secret holding `value`, extractable so it can be wrapped or read back. */
const carrierTemplate = (...more: pkcs11js.Attribute[]) => [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
  { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
  { type: pkcs11js.CKA_TOKEN, value: false },
  { type: pkcs11js.CKA_SENSITIVE, value: false },
  { type: pkcs11js.CKA_EXTRACTABLE, value: true },
  ...more,
];

/** Wrap secret bytes under the token's wrapping key; the carrier object is destroyed at once. */
export function wrapSecret(p11: Pkcs11, session: Buffer, wrappingKey: Buffer, secret: Buffer, native: boolean): Buffer {
  if (!native) return kwpWrap(secret, (block) => aesBlock(p11, session, wrappingKey, block, 'encrypt'));
  const carrier = p11.C_CreateObject(session, carrierTemplate({ type: pkcs11js.CKA_VALUE, value: secret }));
  try {
    return p11.C_WrapKey(session, WRAP_MECHANISM, wrappingKey, carrier, Buffer.alloc(secret.length + 16));
  } finally {
    p11.C_DestroyObject(session, carrier);
  }
}

/** Unwrap into a session object, read its value and destroy it: the token checks the RFC 5649 integrity value. */
export function unwrapSecret(
  p11: Pkcs11,
  session: Buffer,
  wrappingKey: Buffer,
  wrapped: Buffer,
  length: number,
  native: boolean,
): Buffer {
  if (!native) {
    const value = kwpUnwrap(wrapped, (block) => aesBlock(p11, session, wrappingKey, block, 'decrypt'));
    if (value.length === length) return value;
    value.fill(0);
    throw new HsmError('HSM_OPERATION_FAILED', `unwrapped ${value.length} bytes instead of ${length}`);
  }
  // The length comes from the unwrapped data (SoftHSM refuses CKA_VALUE_LEN here); it is checked after.
  const carrier = p11.C_UnwrapKey(session, WRAP_MECHANISM, wrappingKey, wrapped, carrierTemplate());
  try {
    const [value] = readAttributes(p11, session, carrier, [pkcs11js.CKA_VALUE]);
    if (value.length !== length) {
      value.fill(0);
      throw new HsmError('HSM_OPERATION_FAILED', `unwrapped ${value.length} bytes instead of ${length}`);
    }
    return value;
  } finally {
    p11.C_DestroyObject(session, carrier);
  }
}

/** One AES block through the token (CKM_AES_ECB), for the composed wrap. */
function aesBlock(p11: Pkcs11, session: Buffer, key: Buffer, block: Buffer, op: 'encrypt' | 'decrypt'): Buffer {
  if (op === 'encrypt') {
    p11.C_EncryptInit(session, BLOCK_MECHANISM, key);
    return p11.C_Encrypt(session, block, Buffer.alloc(16));
  }
  p11.C_DecryptInit(session, BLOCK_MECHANISM, key);
  return p11.C_Decrypt(session, block, Buffer.alloc(16));
}

/** Whether the token offers the PKCS#11 3.2 ML-KEM and ML-DSA mechanisms (checked once at start). */
export function offersPqMechanisms(p11: Pkcs11, session: Buffer): boolean {
  const { slotID } = p11.C_GetSessionInfo(session);
  const offered = new Set(p11.C_GetMechanismList(slotID));
  return Object.values(PQ_MECHANISMS).every((m) => offered.has(m));
}

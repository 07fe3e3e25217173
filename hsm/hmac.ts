import { pkcs11js, type Pkcs11 } from './module.ts';
import { HsmError } from './errors.ts';
import { readAttributes } from './key-store.ts';

/** HMAC-SHA-256 output length, and the length of the generic secret keyed with it (RFC 2104: at least the output). */
export const HMAC_BYTES = 32;

/** What the token says about a secret key: its identity and the flags that keep its value inside. */
export interface HsmSecretInfo {
  id: string; // CKA_ID, hex
  label: string;
  sensitive: boolean;
  extractable: boolean;
  alwaysSensitive: boolean;
  neverExtractable: boolean;
}

/**
 * A token HMAC key (CKK_GENERIC_SECRET, 256 bits): it may sign (CKM_SHA256_HMAC)
 * and do nothing else, and its value is sensitive and never extractable, so no
 * call can read it, wrap it or derive from it.
 */
export async function generateHmacKey(p11: Pkcs11, session: Buffer, label: string, id: Buffer): Promise<Buffer> {
  return p11.C_GenerateKeyAsync(session, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
    { type: pkcs11js.CKA_VALUE_LEN, value: HMAC_BYTES },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: id },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_SIGN, value: true },
    { type: pkcs11js.CKA_VERIFY, value: false },
    { type: pkcs11js.CKA_ENCRYPT, value: false },
    { type: pkcs11js.CKA_DECRYPT, value: false },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
  ]);
}

/**
 * HMAC-SHA-256 of each message under one key, on one session. Synchronous
 * calls: an HMAC of a short message costs the token microseconds, less than
 * a hop to the libuv pool would.
 */
export function hmacSha256(p11: Pkcs11, session: Buffer, key: Buffer, messages: readonly Uint8Array[]): Buffer[] {
  return messages.map((m) => {
    p11.C_SignInit(session, { mechanism: pkcs11js.CKM_SHA256_HMAC }, key);
    const mac = p11.C_Sign(session, Buffer.from(m), Buffer.alloc(HMAC_BYTES));
    if (mac.length !== HMAC_BYTES)
      throw new HsmError('HSM_OPERATION_FAILED', `HMAC-SHA-256 answered ${mac.length} bytes, not ${HMAC_BYTES}`);
    return mac;
  });
}

const bool = (v: Buffer) => v[0] === 1;

export function describeSecretKey(p11: Pkcs11, session: Buffer, key: Buffer): HsmSecretInfo {
  const [id, label, sensitive, extractable, alwaysSensitive, neverExtractable] = readAttributes(p11, session, key, [
    pkcs11js.CKA_ID,
    pkcs11js.CKA_LABEL,
    pkcs11js.CKA_SENSITIVE,
    pkcs11js.CKA_EXTRACTABLE,
    pkcs11js.CKA_ALWAYS_SENSITIVE,
    pkcs11js.CKA_NEVER_EXTRACTABLE,
  ]);
  return {
    id: id.toString('hex'),
    label: label.toString('utf8'),
    sensitive: bool(sensitive),
    extractable: bool(extractable),
    alwaysSensitive: bool(alwaysSensitive),
    neverExtractable: bool(neverExtractable),
  };
}

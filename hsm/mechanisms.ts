import { pkcs11js, type Pkcs11 } from './module.ts';

/** Every mechanism the gateway's HSM operations use, and what fails without it. */
export const USED_MECHANISMS: ReadonlyArray<{ mechanism: number; name: string; usedFor: string }> = [
  { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN, name: 'CKM_EC_KEY_PAIR_GEN', usedFor: 'key generation and rotation' },
  { mechanism: pkcs11js.CKM_ECDSA, name: 'CKM_ECDSA', usedFor: 'signing content, receipts and checkpoints' },
  { mechanism: pkcs11js.CKM_ECDH1_DERIVE, name: 'CKM_ECDH1_DERIVE', usedFor: 'opening partner deliveries (ECDH-ES)' },
  { mechanism: pkcs11js.CKM_SHA256, name: 'CKM_SHA256', usedFor: 'the in-token Concat KDF (HSM_KDF=in-token)' },
  { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN, name: 'CKM_GENERIC_SECRET_KEY_GEN', usedFor: 'the blinding key' },
  { mechanism: pkcs11js.CKM_SHA256_HMAC, name: 'CKM_SHA256_HMAC', usedFor: 'blinding patient identifiers' },
  { mechanism: pkcs11js.CKM_AES_KEY_GEN, name: 'CKM_AES_KEY_GEN', usedFor: 'the second-factor secrets key' },
  { mechanism: pkcs11js.CKM_AES_GCM, name: 'CKM_AES_GCM', usedFor: 'second-factor (TOTP) secrets' },
];

/**
 * The used mechanisms the module does not list for this session's token. A
 * remoting client (p11-kit-client) lists only what its protocol carries, so
 * this is what will actually be refused with CKR_MECHANISM_INVALID.
 */
export function missingMechanisms(p11: Pkcs11, session: Buffer): typeof USED_MECHANISMS {
  const offered = new Set(p11.C_GetMechanismList(p11.C_GetSessionInfo(session).slotID));
  return USED_MECHANISMS.filter((m) => !offered.has(m.mechanism));
}

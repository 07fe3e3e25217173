import { pkcs11js, type Pkcs11 } from './module.ts';
import { HsmError, toHsmError } from './errors.ts';

const trimmed = (s: string) => s.replace(/[\s\0]+$/, '');

/** The slot whose initialised token carries this label. */
export function findSlotByTokenLabel(p11: Pkcs11, label: string): Buffer | undefined {
  for (const slot of p11.C_GetSlotList(true)) {
    const info = p11.C_GetTokenInfo(slot);
    if (info.flags & pkcs11js.CKF_TOKEN_INITIALIZED && trimmed(info.label) === label) return slot;
  }
  return undefined;
}

/**
 * Initialise a fresh token on the first free slot and set its user PIN.
 * Used only to provision the development SoftHSM token on first run.
 */
export function initToken(p11: Pkcs11, label: string, soPin: string, userPin: string): Buffer {
  const free = p11
    .C_GetSlotList(true)
    .find((slot) => !(p11.C_GetTokenInfo(slot).flags & pkcs11js.CKF_TOKEN_INITIALIZED));
  if (!free) throw new HsmError('HSM_TOKEN_NOT_FOUND', 'no free slot to initialise a token in');
  try {
    p11.C_InitToken(free, soPin, label);
    const slot = findSlotByTokenLabel(p11, label);
    if (!slot) throw new HsmError('HSM_TOKEN_NOT_FOUND', `token ${label} not visible after initialisation`);
    const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      p11.C_Login(session, pkcs11js.CKU_SO, soPin);
      p11.C_InitPIN(session, userPin);
      p11.C_Logout(session);
    } finally {
      p11.C_CloseSession(session);
    }
    return slot;
  } catch (err) {
    throw toHsmError(err, 'token initialisation');
  }
}

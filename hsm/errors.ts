/** Stable error codes for everything that can go wrong talking to the HSM. */
export type HsmErrorCode =
  | 'HSM_UNAVAILABLE' // transient: device, session or module gone; retry later
  | 'HSM_LOGIN_FAILED' // wrong PIN or locked token; operator action needed
  | 'HSM_KEY_NOT_FOUND'
  | 'HSM_TOKEN_NOT_FOUND'
  | 'HSM_MECHANISM_UNSUPPORTED' // the module (or a remoting client between us and the token) lacks a mechanism; operator action
  | 'HSM_OPERATION_FAILED';

export class HsmError extends Error {
  readonly code: HsmErrorCode;
  /** The PKCS#11 return value name (e.g. CKR_PIN_INCORRECT), when there is one. */
  readonly ckr: string | undefined;
  constructor(code: HsmErrorCode, message: string, options?: { cause?: unknown; ckr?: string }) {
    super(message, { cause: options?.cause });
    this.name = 'HsmError';
    this.code = code;
    this.ckr = options?.ckr;
  }
  get transient(): boolean {
    return this.code === 'HSM_UNAVAILABLE';
  }
}

/** Return values after which a session (or the whole module) can no longer be trusted. */
const SESSION_LOST = new Set([
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_DEVICE_REMOVED',
  'CKR_DEVICE_ERROR',
  'CKR_DEVICE_MEMORY',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_TOKEN_NOT_RECOGNIZED',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_SLOT_ID_INVALID',
  'CKR_GENERAL_ERROR',
]);

/** The subset that means the device or the module, not just one session, is gone. */
const DEVICE_LOST = new Set([
  'CKR_DEVICE_REMOVED',
  'CKR_DEVICE_ERROR',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_TOKEN_NOT_RECOGNIZED',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
  'CKR_SLOT_ID_INVALID',
  'CKR_GENERAL_ERROR',
]);

/** A cached object handle no longer names the object (e.g. the token was reloaded). */
const HANDLE_STALE = new Set(['CKR_OBJECT_HANDLE_INVALID', 'CKR_KEY_HANDLE_INVALID']);

const LOGIN_FAILED = new Set([
  'CKR_PIN_INCORRECT',
  'CKR_PIN_LOCKED',
  'CKR_PIN_INVALID',
  'CKR_PIN_LEN_RANGE',
  'CKR_PIN_EXPIRED',
]);

/** pkcs11js errors carry the CKR name as their message, e.g. "CKR_PIN_INCORRECT:160". */
export function ckrName(err: unknown): string | undefined {
  const msg = err instanceof Error ? err.message : String(err);
  const m = /CKR_[A-Z_]+/.exec(msg);
  return m?.[0];
}

export function isSessionLost(err: unknown): boolean {
  const ckr = ckrName(err);
  return ckr !== undefined && SESSION_LOST.has(ckr);
}

export function isDeviceLost(err: unknown): boolean {
  const ckr = err instanceof HsmError ? err.ckr : ckrName(err);
  return ckr !== undefined && DEVICE_LOST.has(ckr);
}

/**
 * Our session is gone but the device is fine: closed or logged out under us,
 * or the module finalised (every session closed; initialising again is safe).
 */
const SESSION_CLOSED = new Set([
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
]);

export function isSessionClosed(err: unknown): boolean {
  const ckr = err instanceof HsmError ? err.ckr : ckrName(err);
  return ckr !== undefined && SESSION_CLOSED.has(ckr);
}

export function isHandleStale(err: unknown): boolean {
  const ckr = ckrName(err);
  return ckr !== undefined && HANDLE_STALE.has(ckr);
}

/** Map any PKCS#11 failure to an HsmError with a stable code. */
export function toHsmError(err: unknown, what: string): HsmError {
  if (err instanceof HsmError) return err;
  const ckr = ckrName(err);
  if (ckr && LOGIN_FAILED.has(ckr))
    return new HsmError('HSM_LOGIN_FAILED', `HSM login failed (${ckr})`, { cause: err, ckr });
  if (ckr && SESSION_LOST.has(ckr))
    return new HsmError('HSM_UNAVAILABLE', `HSM unavailable during ${what} (${ckr})`, { cause: err, ckr });
  if (ckr === 'CKR_MECHANISM_INVALID')
    return new HsmError(
      'HSM_MECHANISM_UNSUPPORTED',
      `HSM ${what} failed (${ckr}): the PKCS#11 module does not offer the mechanism`,
      {
        cause: err,
        ckr,
      },
    );
  return new HsmError('HSM_OPERATION_FAILED', `HSM ${what} failed${ckr ? ` (${ckr})` : ''}`, { cause: err, ckr });
}

/** Failing to open a session is transient, except a wrong PIN, or a missing token at boot. */
export function openSessionError(err: unknown, atBoot: boolean): HsmError {
  const e = toHsmError(err, 'open session');
  if (e.code === 'HSM_LOGIN_FAILED' || e.code === 'HSM_UNAVAILABLE' || (e.code === 'HSM_TOKEN_NOT_FOUND' && atBoot))
    return e;
  return new HsmError('HSM_UNAVAILABLE', `cannot open an HSM session: ${e.message}`, { cause: err, ckr: e.ckr });
}

import pkcs11js from 'pkcs11js';
import { existsSync } from 'node:fs';
import { HsmError, ckrName } from './errors.ts';

export type Pkcs11 = InstanceType<typeof pkcs11js.PKCS11>;
export { pkcs11js };

interface Loaded {
  p11: Pkcs11;
  refs: number;
}

// A PKCS#11 library may be initialised once per process. Several gateways in
// one process (tests, or a multi-tenant host) share it, so it is ref-counted.
const loaded = new Map<string, Loaded>();

/**
 * Load and initialise a PKCS#11 library with CKF_OS_LOCKING_OK: without it,
 * concurrent sessions crashed SoftHSM (SIGSEGV) in our measurements.
 */
export function acquireModule(libraryPath: string): Pkcs11 {
  const existing = loaded.get(libraryPath);
  if (existing) {
    existing.refs++;
    return existing.p11;
  }
  if (!existsSync(libraryPath)) {
    throw new HsmError('HSM_UNAVAILABLE', `PKCS#11 library not found at ${libraryPath}`);
  }
  const p11 = new pkcs11js.PKCS11();
  try {
    p11.load(libraryPath);
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (err) {
    if (ckrName(err) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      throw new HsmError(
        'HSM_UNAVAILABLE',
        `cannot initialise PKCS#11 library ${libraryPath}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  loaded.set(libraryPath, { p11, refs: 1 });
  return p11;
}

export function releaseModule(libraryPath: string): void {
  const entry = loaded.get(libraryPath);
  if (!entry) return;
  entry.refs--;
  if (entry.refs > 0) return;
  loaded.delete(libraryPath);
  try {
    entry.p11.C_Finalize();
  } catch {
    // already finalised; nothing left to release
  }
  try {
    entry.p11.close();
  } catch {
    // library already unloaded
  }
}

/**
 * Finalise and initialise a loaded module again. Network HSM clients (e.g.
 * p11-kit-client) reconnect only on C_Initialize. Every session of the module
 * dies, so callers do this only when none of theirs is mid-operation.
 */
export function reinitializeModule(p11: Pkcs11): void {
  try {
    p11.C_Finalize();
  } catch {
    // not initialised (finalised under us): initialising is all that is needed
  }
  p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
}

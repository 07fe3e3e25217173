import { pkcs11js, type Pkcs11 } from './module.ts';
import { HsmError, ckrName, isSessionLost, toHsmError } from './errors.ts';

export interface SessionPoolOptions {
  p11: Pkcs11;
  /** Finds the token's slot again; slots can be renumbered after a device reset. */
  resolveSlot: () => Buffer;
  pin: string;
  size: number;
}

/**
 * A fixed-size pool of logged-in PKCS#11 sessions. A session runs one
 * operation at a time (a second one gets CKR_OPERATION_ACTIVE), so callers
 * borrow a session for exactly one operation through `use()`.
 *
 * A session that fails with a "device or session lost" code is discarded,
 * and a replacement is opened lazily on the next borrow: the pool heals when
 * the HSM comes back, without a restart.
 */
export class SessionPool {
  readonly size: number;
  readonly #p11: Pkcs11;
  readonly #resolveSlot: () => Buffer;
  readonly #pin: string;
  readonly #idle: Buffer[] = [];
  readonly #waiters: Array<{ resolve: (s: Buffer) => void; reject: (e: unknown) => void }> = [];
  #open = 0;
  #closed = false;
  /** Bumped whenever a session is lost, so cached object handles can be dropped. */
  generation = 0;

  constructor(options: SessionPoolOptions) {
    this.#p11 = options.p11;
    this.#resolveSlot = options.resolveSlot;
    this.#pin = options.pin;
    this.size = Math.max(1, options.size);
  }

  /** Open every session now and log in, so a bad PIN or missing token fails at boot. */
  warm(): void {
    const sessions: Buffer[] = [];
    for (let i = 0; i < this.size; i++) sessions.push(this.#openSession());
    for (const s of sessions) this.#release(s);
  }

  async use<T>(fn: (session: Buffer, p11: Pkcs11) => Promise<T> | T): Promise<T> {
    const session = await this.#acquire();
    try {
      const result = await fn(session, this.#p11);
      this.#release(session);
      return result;
    } catch (err) {
      if (isSessionLost(err)) {
        this.#discard(session);
        throw toHsmError(err, 'operation');
      }
      this.#release(session);
      throw err;
    }
  }

  close(): void {
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) w.reject(new HsmError('HSM_UNAVAILABLE', 'HSM session pool closed'));
    for (const s of this.#idle.splice(0)) this.#closeQuietly(s);
    this.#open = 0;
  }

  #acquire(): Promise<Buffer> {
    if (this.#closed) return Promise.reject(new HsmError('HSM_UNAVAILABLE', 'HSM session pool closed'));
    const idle = this.#idle.pop();
    if (idle) return Promise.resolve(idle);
    if (this.#open < this.size) {
      try {
        return Promise.resolve(this.#openSession());
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #release(session: Buffer): void {
    if (this.#closed) {
      this.#closeQuietly(session);
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve(session);
    else this.#idle.push(session);
  }

  #discard(session: Buffer): void {
    this.#closeQuietly(session);
    this.#open--;
    this.generation++;
    // A waiter would otherwise wait for a session that will never come back.
    const waiter = this.#waiters.shift();
    if (waiter) {
      try {
        waiter.resolve(this.#openSession());
      } catch (err) {
        waiter.reject(err);
      }
    }
  }

  #openSession(): Buffer {
    const p11 = this.#p11;
    let session: Buffer;
    try {
      session = p11.C_OpenSession(this.#resolveSlot(), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    } catch (err) {
      if (ckrName(err) === 'CKR_CRYPTOKI_NOT_INITIALIZED') {
        // The module was finalised under us (device reset): start it again.
        try {
          p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
          session = p11.C_OpenSession(this.#resolveSlot(), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
        } catch (again) {
          throw toHsmError(again, 'open session');
        }
      } else {
        throw err instanceof HsmError ? err : new HsmError('HSM_UNAVAILABLE', `cannot open an HSM session: ${(err as Error).message}`, { cause: err, ckr: ckrName(err) });
      }
    }
    try {
      p11.C_Login(session, pkcs11js.CKU_USER, this.#pin);
    } catch (err) {
      if (ckrName(err) !== 'CKR_USER_ALREADY_LOGGED_IN') {
        this.#closeQuietly(session);
        throw toHsmError(err, 'login');
      }
    }
    this.#open++;
    return session;
  }

  #closeQuietly(session: Buffer): void {
    try {
      this.#p11.C_CloseSession(session);
    } catch {
      // the session is already gone
    }
  }
}

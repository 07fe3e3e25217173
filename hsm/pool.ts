import { pkcs11js, reinitializeModule, type Pkcs11 } from './module.ts';
import { HsmError, ckrName, isDeviceLost, isSessionLost, openSessionError, toHsmError } from './errors.ts';

export interface SessionPoolStats {
  size: number;
  open: number;
  busy: number;
  waiting: number;
  /** Operations that had to wait for a session, since the pool opened. */
  waits: number;
  /** Operations that failed with a PKCS#11 error, since the pool opened (bad input the device refused aside). */
  errors: number;
}

export interface SessionPoolOptions {
  p11: Pkcs11;
  /** Finds the token's slot again; slots can be renumbered after a device reset. */
  resolveSlot: () => Buffer;
  pin: string;
  size: number;
  /** Least time between two module re-initialisations while the HSM stays down. */
  resetIntervalMs?: number;
}

/**
 * A fixed-size pool of logged-in PKCS#11 sessions. A session runs one
 * operation at a time (a second one gets CKR_OPERATION_ACTIVE), so callers
 * borrow a session for exactly one operation through `use()`.
 *
 * Recovery: a session that fails with a "device or session lost" code is
 * discarded together with every idle session (they share its fate), so the
 * first call after the HSM returns already gets a fresh session. If sessions
 * cannot even be opened and none of ours is in use, the module is finalised
 * and initialised again (at most once per resetIntervalMs): network HSM
 * clients such as p11-kit-client only reconnect on C_Initialize.
 */
export class SessionPool {
  readonly size: number;
  readonly #p11: Pkcs11;
  readonly #resolveSlot: () => Buffer;
  readonly #pin: string;
  readonly #resetIntervalMs: number;
  readonly #idle: Buffer[] = [];
  readonly #waiters: Array<{ resolve: (s: Buffer) => void; reject: (e: unknown) => void }> = [];
  #open = 0;
  #closed = false;
  #warmed = false;
  #lastReset = 0;
  #waits = 0;
  #errors = 0;
  /** Bumped whenever a session is lost, so cached object handles can be dropped. */
  generation = 0;

  constructor(options: SessionPoolOptions) {
    this.#p11 = options.p11;
    this.#resolveSlot = options.resolveSlot;
    this.#pin = options.pin;
    this.size = Math.max(1, options.size);
    this.#resetIntervalMs = options.resetIntervalMs ?? 1_000;
  }

  /** Open every session now and log in, so a bad PIN or missing token fails at boot. */
  warm(): void {
    const sessions: Buffer[] = [];
    try {
      for (let i = 0; i < this.size; i++) sessions.push(this.#openSession());
    } catch (err) {
      for (const s of sessions) this.#closeQuietly(s);
      this.#open = 0;
      throw err;
    }
    this.#warmed = true;
    for (const s of sessions) this.#release(s);
  }

  async use<T>(fn: (session: Buffer, p11: Pkcs11) => Promise<T> | T): Promise<T> {
    // Fast path without an extra promise when a session is idle.
    const session = this.#idle.pop() ?? (await this.#acquire());
    let result: T;
    try {
      result = await fn(session, this.#p11);
    } catch (err) {
      if (isSessionLost(err)) {
        // A session that still answers was given bad input (e.g. a peer point off the curve): no device error.
        if (this.#isAlive(err, session)) {
          this.#release(session);
          throw new HsmError('HSM_OPERATION_FAILED', 'HSM operation failed (CKR_GENERAL_ERROR)', {
            cause: err,
            ckr: 'CKR_GENERAL_ERROR',
          });
        }
        this.#errors++;
        this.#discard(session, true);
        throw toHsmError(err, 'operation');
      }
      this.#errors++;
      // A session left with an operation active would refuse every later one: replace it.
      if (ckrName(err) === 'CKR_OPERATION_ACTIVE') this.#discard(session, false);
      else this.#release(session);
      throw err;
    }
    this.#release(session);
    return result;
  }

  /**
   * CKR_GENERAL_ERROR is also what SoftHSM answers to bad input (e.g. a peer
   * point off the curve): if the session still answers, the device is fine and
   * the pool must not be flushed (nor the caller told to retry later).
   */
  #isAlive(err: unknown, session: Buffer): boolean {
    if (ckrName(err) !== 'CKR_GENERAL_ERROR') return false;
    try {
      this.#p11.C_GetSessionInfo(session);
      return true;
    } catch {
      return false;
    }
  }

  /** What the metrics report: sessions in use, callers waiting, and totals since the pool opened. */
  stats(): SessionPoolStats {
    return {
      size: this.size,
      open: this.#open,
      busy: this.#open - this.#idle.length,
      waiting: this.#waiters.length,
      waits: this.#waits,
      errors: this.#errors,
    };
  }

  /** Sessions currently open (idle or in use). */
  get openSessions(): number {
    return this.#open;
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
    this.#waits++;
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

  /** Close a session that cannot be trusted; with `lost`, the idle ones too (they share its fate). */
  #discard(session: Buffer, lost: boolean): void {
    this.#closeQuietly(session);
    if (this.#closed) return;
    this.#open--;
    if (lost) {
      for (const s of this.#idle.splice(0)) {
        this.#closeQuietly(s);
        this.#open--;
      }
      this.generation++;
    }
    // Waiters would otherwise wait for sessions that will never come back.
    while (this.#open < this.size) {
      const waiter = this.#waiters.shift();
      if (!waiter) break;
      try {
        waiter.resolve(this.#openSession());
      } catch (err) {
        waiter.reject(err);
      }
    }
  }

  #openSession(): Buffer {
    try {
      return this.#openAndLogin();
    } catch (err) {
      if (!this.#mayReset(err)) throw openSessionError(err, !this.#warmed);
    }
    this.#lastReset = Date.now();
    try {
      reinitializeModule(this.#p11);
      return this.#openAndLogin();
    } catch (err) {
      throw openSessionError(err, !this.#warmed);
    }
  }

  /** Re-initialising the module is only safe when none of our sessions is mid-operation. */
  #mayReset(err: unknown): boolean {
    // Finalised under us: no session of anyone's is left, so initialising again is always safe.
    if (ckrName(err) === 'CKR_CRYPTOKI_NOT_INITIALIZED') return true;
    if (!this.#warmed) return false;
    const tokenGone = err instanceof HsmError && err.code === 'HSM_TOKEN_NOT_FOUND';
    if (!tokenGone && !isDeviceLost(err)) return false;
    return this.#open === 0 && Date.now() - this.#lastReset >= this.#resetIntervalMs;
  }

  #openAndLogin(): Buffer {
    const p11 = this.#p11;
    const session = p11.C_OpenSession(this.#resolveSlot(), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
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

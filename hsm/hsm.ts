import { randomBytes } from 'node:crypto';
import { acquireModule, releaseModule, pkcs11js, type Pkcs11 } from './module.ts';
import { HsmError, ckrName, isHandleStale, isSessionClosed, toHsmError } from './errors.ts';
import { SessionPool, type SessionPoolStats } from './pool.ts';
import { findSlotByTokenLabel } from './token.ts';
import {
  describeKey,
  findKeyObject,
  findObjects,
  generateKeyPair,
  type HsmKeyInfo,
  type KeySpec,
  type KeyUsage,
} from './key-store.ts';
import { signDigest, digest, type SignAlg } from './sign.ts';
import { deriveConcatKdf, type KdfMode } from './ecdh.ts';
import { aesGcmDecrypt, aesGcmEncrypt, generateAesKey } from './secret-key.ts';
import { generateWrappingKey, offersPqMechanisms, unwrapSecret, wrapSecret, wrapsNatively } from './key-wrap.ts';
import { describeSecretKey, generateHmacKey, hmacSha256, type HsmSecretInfo } from './hmac.ts';
import { missingMechanisms, type USED_MECHANISMS } from './mechanisms.ts';

export interface HsmOptions {
  library: string;
  tokenLabel: string;
  pin: string;
  sessions: number;
}

/**
 * The gateway's HSM: one token, a pool of logged-in sessions, and the few
 * operations the gateway needs. Keys are addressed by CKA_ID (hex), because
 * object handles change between processes.
 */
export class Hsm {
  readonly #library: string;
  readonly #p11: Pkcs11;
  readonly #pool: SessionPool;
  readonly #handles = new Map<string, { handle: Buffer; generation: number }>();
  /** Whether the module wraps with CKM_AES_KEY_WRAP_PAD itself (see key-wrap.ts), asked once. */
  #nativeWrap: boolean | undefined;
  #closed = false;

  private constructor(library: string, p11: Pkcs11, pool: SessionPool) {
    this.#library = library;
    this.#p11 = p11;
    this.#pool = pool;
  }

  /** Load the module, find the token, open and log in every session. Throws HsmError on any failure. */
  static open(options: HsmOptions): Hsm {
    const p11 = acquireModule(options.library);
    try {
      const resolveSlot = () => {
        const slot = findSlotByTokenLabel(p11, options.tokenLabel);
        if (!slot)
          throw new HsmError(
            'HSM_TOKEN_NOT_FOUND',
            `no initialised token labelled "${options.tokenLabel}" in ${options.library}`,
          );
        return slot;
      };
      const pool = new SessionPool({ p11, resolveSlot, pin: options.pin, size: options.sessions });
      pool.warm();
      return new Hsm(options.library, p11, pool);
    } catch (err) {
      releaseModule(options.library);
      throw toHsmError(err, 'start');
    }
  }

  get sessions(): number {
    return this.#pool.size;
  }

  /** The session pool's use, for the metrics. */
  poolStats(): SessionPoolStats {
    return this.#pool.stats();
  }

  async generateKeyPair(spec: KeySpec, usage: KeyUsage, label: string): Promise<HsmKeyInfo> {
    const id = randomBytes(16);
    return this.#run('key generation', async (session, p11) => {
      await generateKeyPair(p11, session, spec, usage, label, id);
      const key = findKeyObject(p11, session, id, pkcs11js.CKO_PRIVATE_KEY);
      if (!key) throw new HsmError('HSM_OPERATION_FAILED', 'generated key not found on the token');
      return describeKey(p11, session, key);
    });
  }

  /** A token HMAC key (see hmac.ts): sensitive, never extractable, for CKM_SHA256_HMAC only. */
  async generateHmacKey(label: string): Promise<HsmSecretInfo> {
    const id = randomBytes(16);
    return this.#run('key generation', async (session, p11) => {
      await generateHmacKey(p11, session, label, id);
      const key = findKeyObject(p11, session, id, pkcs11js.CKO_SECRET_KEY);
      if (!key) throw new HsmError('HSM_OPERATION_FAILED', 'generated key not found on the token');
      return describeSecretKey(p11, session, key);
    });
  }

  async describeKey(id: string): Promise<HsmKeyInfo> {
    return this.#run(
      'key lookup',
      (session, p11) => describeKey(p11, session, this.#handle(session, id, pkcs11js.CKO_PRIVATE_KEY)),
      true,
    );
  }

  /** A private key or a token secret key with this CKA_ID. */
  async hasKey(id: string): Promise<boolean> {
    return this.#run(
      'key lookup',
      (session, p11) =>
        [pkcs11js.CKO_PRIVATE_KEY, pkcs11js.CKO_SECRET_KEY].some(
          (cls) => findKeyObject(p11, session, Buffer.from(id, 'hex'), cls) !== undefined,
        ),
      true,
    );
  }

  async listKeys(): Promise<HsmKeyInfo[]> {
    return this.#run(
      'key listing',
      (session, p11) =>
        findObjects(p11, session, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }]).map((k) =>
          describeKey(p11, session, k),
        ),
      true,
    );
  }

  /** The secret keys kept on the token (session objects, such as an ECDH shared secret, are not). */
  async listSecretKeys(): Promise<HsmSecretInfo[]> {
    return this.#run(
      'key listing',
      (session, p11) =>
        findObjects(p11, session, [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
          { type: pkcs11js.CKA_TOKEN, value: true },
        ]).map((k) => describeSecretKey(p11, session, k)),
      true,
    );
  }

  /** Remove a key from the token: both halves of a key pair, or a secret key. */
  async destroyKey(id: string): Promise<void> {
    await this.#run('key destruction', (session, p11) => {
      const cka = Buffer.from(id, 'hex');
      for (const cls of [pkcs11js.CKO_PRIVATE_KEY, pkcs11js.CKO_PUBLIC_KEY, pkcs11js.CKO_SECRET_KEY]) {
        for (const obj of findObjects(p11, session, [
          { type: pkcs11js.CKA_CLASS, value: cls },
          { type: pkcs11js.CKA_ID, value: cka },
        ])) {
          p11.C_DestroyObject(session, obj);
        }
      }
      this.#handles.delete(id);
    });
  }

  async sign(id: string, alg: SignAlg, data: Uint8Array): Promise<Buffer> {
    return this.signDigest(id, alg, digest(alg, data));
  }

  signDigest(id: string, alg: SignAlg, hash: Buffer): Promise<Buffer> {
    return this.#run(
      'signing',
      (session, p11) =>
        this.#withKey(session, id, pkcs11js.CKO_PRIVATE_KEY, (key) => signDigest(p11, session, key, alg, hash)),
      true,
    );
  }

  /** HMAC-SHA-256 of each message under the token secret key `id`, in one session borrow. */
  hmacSha256(id: string, messages: readonly Uint8Array[]): Promise<Buffer[]> {
    return this.#run(
      'keyed hashing',
      (session, p11) =>
        this.#withKey(session, id, pkcs11js.CKO_SECRET_KEY, async (key) => hmacSha256(p11, session, key, messages)),
      true,
    );
  }

  /** ECDH with a token key, then the JOSE Concat KDF; returns only the derived key. */
  async deriveConcatKdf(
    id: string,
    peerPoint: Buffer,
    zBytes: number,
    otherInfo: Buffer,
    keyBytes: number,
    mode: KdfMode,
    secretSuffix?: Buffer,
  ): Promise<Buffer> {
    return this.#run(
      'key agreement',
      (session, p11) =>
        this.#withKey(session, id, pkcs11js.CKO_PRIVATE_KEY, (key) =>
          deriveConcatKdf(p11, session, key, peerPoint, zBytes, otherInfo, keyBytes, mode, secretSuffix),
        ),
      true,
    );
  }

  /** A new AES-256 key on the token (sensitive, never extractable, encrypt and decrypt only); returns its CKA_ID. */
  async generateSecretKey(label: string): Promise<string> {
    const id = randomBytes(16);
    await this.#run('key generation', (session, p11) => generateAesKey(p11, session, label, id));
    return id.toString('hex');
  }

  async hasSecretKey(id: string): Promise<boolean> {
    return this.#run(
      'key lookup',
      (session, p11) => findKeyObject(p11, session, Buffer.from(id, 'hex'), pkcs11js.CKO_SECRET_KEY) !== undefined,
      true,
    );
  }

  /** AES-GCM with a token secret key; the ciphertext carries its tag. */
  encrypt(id: string, iv: Buffer, aad: Buffer, plaintext: Buffer): Promise<Buffer> {
    return this.#run(
      'encryption',
      (session, p11) =>
        this.#withKey(session, id, pkcs11js.CKO_SECRET_KEY, (key) =>
          aesGcmEncrypt(p11, session, key, iv, aad, plaintext),
        ),
      true,
    );
  }

  /** AES-GCM decryption with a token secret key: fails unless key, IV, associated data and tag all agree. */
  decrypt(id: string, iv: Buffer, aad: Buffer, ciphertext: Buffer): Promise<Buffer> {
    return this.#run(
      'decryption',
      (session, p11) =>
        this.#withKey(session, id, pkcs11js.CKO_SECRET_KEY, (key) =>
          aesGcmDecrypt(p11, session, key, iv, aad, ciphertext),
        ),
      true,
    );
  }

  /** A new AES-256 key on the token that may only wrap and unwrap; returns its CKA_ID. */
  async generateWrappingKey(label: string): Promise<string> {
    const id = randomBytes(16);
    await this.#run('key generation', (session, p11) =>
      generateWrappingKey(p11, session, label, id, this.#wrapsNatively(session, p11)),
    );
    return id.toString('hex');
  }

  /** Wrap software key material (RFC 5649, CKM_AES_KEY_WRAP_PAD or composed) under the token wrapping key `id`. */
  wrapSecret(id: string, secret: Buffer): Promise<Buffer> {
    return this.#run(
      'key wrapping',
      (session, p11) =>
        this.#withKey(session, id, pkcs11js.CKO_SECRET_KEY, async (key) =>
          wrapSecret(p11, session, key, secret, this.#wrapsNatively(session, p11)),
        ),
      true,
    );
  }

  /** Unwrap what wrapSecret made; fails if the wrapped bytes were altered or another key wrapped them. */
  unwrapSecret(id: string, wrapped: Buffer, length: number): Promise<Buffer> {
    return this.#run(
      'key unwrapping',
      (session, p11) =>
        this.#withKey(session, id, pkcs11js.CKO_SECRET_KEY, async (key) =>
          unwrapSecret(p11, session, key, wrapped, length, this.#wrapsNatively(session, p11)),
        ),
      true,
    );
  }

  /** Whether the token has the PKCS#11 3.2 ML-KEM/ML-DSA mechanisms; without them PQ keys are software keys, wrapped. */
  offersPqMechanisms(): Promise<boolean> {
    return this.#run('mechanism list', (session, p11) => offersPqMechanisms(p11, session), true);
  }

  /** The mechanisms the gateway uses that the module does not offer (see mechanisms.ts). */
  missingMechanisms(): Promise<typeof USED_MECHANISMS> {
    return this.#run('mechanism list', (session, p11) => missingMechanisms(p11, session), true);
  }

  /** A cheap round trip to the token, for readiness checks. */
  async ping(): Promise<void> {
    await this.#run('ping', (session, p11) => p11.C_GetSessionInfo(session), true);
  }

  /** For tests and tooling that must inspect the session state (e.g. leaked objects). */
  async withSession<T>(fn: (session: Buffer, p11: Pkcs11) => T | Promise<T>): Promise<T> {
    return this.#run('session', fn);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pool.close();
    releaseModule(this.#library);
  }

  #wrapsNatively(session: Buffer, p11: Pkcs11): boolean {
    this.#nativeWrap ??= wrapsNatively(p11, session);
    return this.#nativeWrap;
  }

  /** The key object of class `cls` (private or secret) with this CKA_ID; ids are random, so one id names one key. */
  #handle(session: Buffer, id: string, cls: number): Buffer {
    const cached = this.#handles.get(id);
    if (cached && cached.generation === this.#pool.generation) return cached.handle;
    const handle = findKeyObject(this.#p11, session, Buffer.from(id, 'hex'), cls);
    if (!handle)
      throw new HsmError(
        'HSM_KEY_NOT_FOUND',
        `no ${cls === pkcs11js.CKO_SECRET_KEY ? 'secret' : 'private'} key with CKA_ID ${id} on the token`,
      );
    this.#handles.set(id, { handle, generation: this.#pool.generation });
    return handle;
  }

  /**
   * Run fn with the key's cached handle. Handles can go stale without a
   * session loss (SoftHSM reloads objects whose files changed), so a stale
   * handle is looked up again once instead of failing forever.
   */
  #withKey<T>(session: Buffer, id: string, cls: number, fn: (key: Buffer) => Promise<T>): Promise<T> {
    const retry = (err: unknown): Promise<T> => {
      if (!isHandleStale(err)) throw err;
      this.#handles.delete(id);
      return fn(this.#handle(session, id, cls));
    };
    // Not an async function: the hot path adds no promise of its own.
    let first: Promise<T>;
    try {
      first = fn(this.#handle(session, id, cls));
    } catch (err) {
      return Promise.resolve().then(() => retry(err));
    }
    return first.catch(retry);
  }

  /**
   * Borrow a session for fn. Idempotent operations (`retry`) run once more on
   * a fresh session if theirs was closed under them (e.g. C_CloseAllSessions
   * by another user of the module) or was left with an operation active (the
   * pool replaces such a session): the caller never sees that.
   */
  #run<T>(what: string, fn: (session: Buffer, p11: Pkcs11) => T | Promise<T>, retry = false): Promise<T> {
    if (this.#closed) return Promise.reject(new HsmError('HSM_UNAVAILABLE', 'HSM closed'));
    return this.#pool.use(fn).catch((err: unknown) => {
      if (retry && !this.#closed && (isSessionClosed(err) || ckrName(err) === 'CKR_OPERATION_ACTIVE'))
        return this.#run(what, fn, false);
      throw toHsmError(err, what);
    });
  }
}

export { HsmError } from './errors.ts';
export type { HsmErrorCode } from './errors.ts';
export type { HsmKeyInfo, KeySpec, KeyUsage, PublicJwk, Curve } from './key-store.ts';
export type { SignAlg } from './sign.ts';
export type { KdfMode } from './ecdh.ts';
export type { HsmSecretInfo } from './hmac.ts';

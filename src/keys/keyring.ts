import { sign as nodeSign, verify, type KeyObject } from 'node:crypto';
import { importPublicJwk } from '../jose/public-key.ts';
import type pg from 'pg';
import type { Hsm, PublicJwk } from '../../hsm/hsm.ts';
import { hsmSigner, type Signer } from '../jose/signer.ts';
import { listKeys, type AkpJwk, type GatewayKeyRow, type KeyJwk, type KeyUse } from './store.ts';
import { blindingKid } from './blinding.ts';
import { akpPublicJwk, unwrapPqKey, type AkpPublicJwk, type PqAlg } from './pq-keys.ts';

/**
 * Bound on how long a process keeps using a key after another process (the
 * worker, the CLI) rotated it: every use asks fresh(), which reloads rows
 * older than this. Checked at the point of use, so a failed reload reaches
 * the caller instead of leaving a background copy silently stale.
 */
export const KEYRING_MAX_AGE_MS = 5_000;

export interface PublishedJwk extends PublicJwk {
  kid: string;
  use: 'sig' | 'enc';
  alg: string;
}

/** Key pairs in the HSM have a public JWK to publish; the blinding key (a secret key) has none. */
const publicHalf = (jwk: KeyJwk): jwk is PublicJwk => jwk.kty !== 'oct' && jwk.kty !== 'AKP';
const keyPair = (k: GatewayKeyRow): k is GatewayKeyRow & { public_jwk: PublicJwk } => publicHalf(k.public_jwk);
const pqKey = (k: GatewayKeyRow): k is GatewayKeyRow & { public_jwk: AkpJwk; wrapped_seed: Buffer } =>
  k.public_jwk.kty === 'AKP' && k.wrapped_seed !== null;
const PUBLISHED_RANK = { active: 0, 'pre-activation': 1, deactivated: 2 } as Record<string, number>;

/** A post-quantum private key in this process's memory, with the kid of its published half. */
export interface PqPrivateKey {
  readonly kid: string;
  readonly privateKey: KeyObject;
}

/**
 * The gateway's keys as the running process sees them: the active signer per
 * use, decryption keys by kid, and the public JWKS. Reloaded from the
 * database on demand (rotation may happen in another process): callers take
 * keys from fresh(), or reload() right after a rotation of their own.
 */
export class Keyring {
  readonly #pool: pg.Pool;
  readonly #hsm: Hsm;
  #rows: GatewayKeyRow[] = [];
  #loadedAt = 0;
  /** Unwrapped post-quantum private keys by kid: unwrapped once per process, dropped when the key is destroyed. */
  readonly #pqPrivate = new Map<string, Promise<KeyObject>>();

  constructor(pool: pg.Pool, hsm: Hsm) {
    this.#pool = pool;
    this.#hsm = hsm;
  }

  async reload(): Promise<void> {
    this.#rows = await listKeys(this.#pool);
    this.#loadedAt = Date.now();
    for (const kid of this.#pqPrivate.keys())
      if (!this.#rows.some((k) => k.kid === kid && usable(k))) this.#pqPrivate.delete(kid);
  }

  /** Reload if older than maxAgeMs. */
  async fresh(maxAgeMs = KEYRING_MAX_AGE_MS): Promise<this> {
    if (Date.now() - this.#loadedAt > maxAgeMs) await this.reload();
    return this;
  }

  active(use: KeyUse): GatewayKeyRow {
    const row = this.#rows.find((k) => k.use === use && k.state === 'active');
    if (!row) throw new Error(`no active ${use} key`);
    return row;
  }

  signer(use: 'sig' | 'audit' = 'sig'): Signer {
    const row = this.active(use);
    return hsmSigner(this.#hsm, row.hsm_id, row.alg as 'ES256', row.kid);
  }

  /**
   * Every blinding key still on the token, the active one first: an entry is
   * blinded with the active key, and a lookup tries each (an entry written
   * before a rotation carries the blind of the key active then).
   */
  blindingKeys(): GatewayKeyRow[] {
    const rank = { active: 0, 'pre-activation': 1, deactivated: 2 } as Record<string, number>;
    return this.#rows
      .filter((k) => k.use === 'blinding' && k.state in rank)
      .sort((a, b) => (rank[a.state] ?? 0) - (rank[b.state] ?? 0) || b.created_at.getTime() - a.created_at.getTime());
  }

  /** The active ML-DSA-65 key, unwrapped into memory (protocol v2 signatures). */
  async pqSigner(): Promise<PqPrivateKey> {
    const row = this.active('pq-sig');
    return { kid: row.kid, privateKey: await this.#unwrapped(row) };
  }

  /** An ML-KEM-768 key that may still open v2 envelopes (active or deactivated), unwrapped; undefined if unknown. */
  async kemKey(kid: string): Promise<KeyObject | undefined> {
    const row = this.#rows.find((k) => k.kid === kid && k.use === 'pq-enc' && usable(k));
    return row ? this.#unwrapped(row) : undefined;
  }

  #unwrapped(row: GatewayKeyRow): Promise<KeyObject> {
    if (!pqKey(row)) throw new Error(`key ${row.kid} is not a post-quantum key`);
    let key = this.#pqPrivate.get(row.kid);
    if (!key) {
      const wrapped = { alg: row.alg as PqAlg, kid: row.kid, pub: row.public_jwk.pub, wrapped: row.wrapped_seed };
      key = unwrapPqKey(this.#hsm, { ...wrapped, wrappingKeyId: row.hsm_id });
      // A failed unwrap (HSM down) is not remembered: the next use tries again.
      key.catch(() => this.#pqPrivate.delete(row.kid));
      this.#pqPrivate.set(row.kid, key);
    }
    return key;
  }

  /** An encryption key that may still open envelopes (active or deactivated, not destroyed). */
  decryptionKey(kid: string): GatewayKeyRow | undefined {
    return this.#rows.find(
      (k) => k.kid === kid && k.use === 'enc' && (k.state === 'active' || k.state === 'deactivated'),
    );
  }

  /**
   * Every public key a peer may need: the active keys first (partners seal to
   * the first enc key listed), then pre-activation keys (published before
   * use, KEY_PREPUBLISH), then deactivated keys while they are retained
   * (enc: envelopes still in their retry window; sig: signatures still being
   * verified). Destroyed keys leave the JWKS; the key history keeps them.
   */
  jwks(options: { pq?: boolean } = {}): { keys: (PublishedJwk | AkpPublicJwk)[] } {
    const byRank = (a: GatewayKeyRow, b: GatewayKeyRow) =>
      (PUBLISHED_RANK[a.state] ?? 0) - (PUBLISHED_RANK[b.state] ?? 0) ||
      b.created_at.getTime() - a.created_at.getTime();
    const keys = this.#rows
      .filter(keyPair)
      .filter((k) => (k.use === 'sig' || k.use === 'enc') && k.state in PUBLISHED_RANK) // so every state sorted below has a rank
      .sort(byRank)
      .map((k) => ({ ...k.public_jwk, kid: k.kid, use: k.use as 'sig' | 'enc', alg: k.alg }));
    // The AKP keys after every EC key, so a v1 sender's "first enc key" stays the EC key (PROTOCOL §14.1).
    const pq = this.#rows
      .filter(pqKey)
      .filter((k) => k.state in PUBLISHED_RANK)
      .sort((a, b) => a.use.localeCompare(b.use) || byRank(a, b))
      .map((k) => akpPublicJwk({ alg: k.alg as PqAlg, pub: k.public_jwk.pub, kid: k.kid }));
    return { keys: options.pq === false ? keys : [...keys, ...pq] };
  }

  /** Audit checkpoint keys, for offline verifiers. */
  auditKeys(): PublishedJwk[] {
    return this.#rows
      .filter(keyPair)
      .filter((k) => k.use === 'audit')
      .map((k) => ({ ...k.public_jwk, kid: k.kid, use: 'sig' as const, alg: k.alg }));
  }

  rows(): readonly GatewayKeyRow[] {
    return this.#rows;
  }

  /**
   * Boot self-test: sign a digest with the active signing keys in the HSM and
   * verify it in software; recompute the active blinding key's check value,
   * which must be its kid (else the row and the token key are not the same key).
   */
  async selfTest(): Promise<void> {
    const blinding = this.active('blinding');
    if ((await blindingKid(this.#hsm, blinding.hsm_id)) !== blinding.kid)
      throw new Error(`HSM self-test failed: blinding key ${blinding.kid} on the token has another check value`);
    const probe = Buffer.from(`gateway self-test ${Date.now()}`);
    for (const use of ['sig', 'audit'] as const) {
      const row = this.active(use);
      if (!keyPair(row)) throw new Error(`the ${use} key ${row.kid} has no public key`);
      const signature = await this.signer(use).sign(probe);
      const key = importPublicJwk(row.public_jwk);
      if (!verify('sha256', probe, { key, dsaEncoding: 'ieee-p1363' }, signature)) {
        throw new Error(`HSM self-test failed: signature by ${use} key ${row.kid} does not verify`);
      }
    }
    // The wrapped post-quantum seeds unwrap to the recorded public keys (unwrapPqKey checks), and ML-DSA signs.
    const pqSigner = await this.pqSigner();
    await this.#unwrapped(this.active('pq-enc'));
    const pqPub = importPublicJwk(this.active('pq-sig').public_jwk);
    if (!verify(null, probe, pqPub, nodeSign(null, probe, pqSigner.privateKey)))
      throw new Error(`self-test failed: ML-DSA signature by ${pqSigner.kid} does not verify`);
  }
}

const usable = (k: GatewayKeyRow) => k.state === 'active' || k.state === 'deactivated' || k.state === 'pre-activation';

/**
 * Where the post-quantum private keys live. The token is asked at start for
 * the PKCS#11 3.2 ML-KEM/ML-DSA mechanisms; until the gateway drives them,
 * the keys are software keys wrapped by an HSM AES key either way, and the
 * start log says which the token could have done.
 */
export type PqCustody = { keys: 'software, wrapped by the HSM'; tokenOffersPqMechanisms: boolean };

/** Boot sequence shared by the server and the worker: keys exist, load them, prove the HSM signs. */
export async function openKeyring(
  pool: pg.Pool,
  hsm: Hsm,
  log?: { info(detail: object, message: string): void },
): Promise<Keyring> {
  const { ensureGatewayKeys } = await import('./bootstrap.ts');
  const custody: PqCustody = {
    keys: 'software, wrapped by the HSM',
    tokenOffersPqMechanisms: await hsm.offersPqMechanisms(),
  };
  log?.info({ pq: custody }, 'post-quantum keys');
  const generated = await ensureGatewayKeys(pool, hsm);
  if (generated.length) log?.info({ kids: generated }, 'generated gateway keys in the HSM');
  const keyring = new Keyring(pool, hsm);
  await keyring.reload();
  await keyring.selfTest();
  return keyring;
}

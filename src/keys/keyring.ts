import { verify } from 'node:crypto';
import { importPublicJwk } from '../jose/public-key.ts';
import type pg from 'pg';
import type { Hsm, PublicJwk } from '../../hsm/hsm.ts';
import { hsmSigner, type Signer } from '../jose/signer.ts';
import { listKeys, type GatewayKeyRow, type KeyJwk, type KeyUse } from './store.ts';
import { blindingKid } from './blinding.ts';

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

/** Key pairs have a public JWK to publish; the blinding key (a secret key) has none. */
const publicHalf = (jwk: KeyJwk): jwk is PublicJwk => jwk.kty !== 'oct';
const keyPair = (k: GatewayKeyRow): k is GatewayKeyRow & { public_jwk: PublicJwk } => publicHalf(k.public_jwk);

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

  constructor(pool: pg.Pool, hsm: Hsm) {
    this.#pool = pool;
    this.#hsm = hsm;
  }

  async reload(): Promise<void> {
    this.#rows = await listKeys(this.#pool);
    this.#loadedAt = Date.now();
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
  jwks(): { keys: PublishedJwk[] } {
    const rank = { active: 0, 'pre-activation': 1, deactivated: 2 } as Record<string, number>;
    const keys = this.#rows
      .filter(keyPair)
      .filter((k) => (k.use === 'sig' || k.use === 'enc') && k.state in rank) // so every state sorted below has a rank
      .sort((a, b) => (rank[a.state] ?? 0) - (rank[b.state] ?? 0) || b.created_at.getTime() - a.created_at.getTime())
      .map((k) => ({ ...k.public_jwk, kid: k.kid, use: k.use as 'sig' | 'enc', alg: k.alg }));
    return { keys };
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
  }
}

/** Boot sequence shared by the server and the worker: keys exist, load them, prove the HSM signs. */
export async function openKeyring(pool: pg.Pool, hsm: Hsm, log?: (kids: string[]) => void): Promise<Keyring> {
  const { ensureGatewayKeys } = await import('./bootstrap.ts');
  const generated = await ensureGatewayKeys(pool, hsm);
  if (generated.length) log?.(generated);
  const keyring = new Keyring(pool, hsm);
  await keyring.reload();
  await keyring.selfTest();
  return keyring;
}

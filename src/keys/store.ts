import type { Queryable } from '../db/pool.ts';
import type { PublicJwk } from '../../hsm/hsm.ts';

/** 'pq-sig' (ML-DSA-65) and 'pq-enc' (ML-KEM-768) are the post-quantum halves of 'sig' and 'enc' (protocol v2). */
export type KeyUse = 'sig' | 'enc' | 'audit' | 'blinding' | 'pq-sig' | 'pq-enc';
export type KeyState = 'pre-activation' | 'active' | 'deactivated' | 'destroyed';
export const KEY_USES: readonly KeyUse[] = ['sig', 'enc', 'audit', 'blinding', 'pq-sig', 'pq-enc'];
export const PQ_USES: readonly KeyUse[] = ['pq-sig', 'pq-enc'];

/** A post-quantum public key as RFC 9964 writes it (`AKP`, the algorithm and the raw public key). */
export interface AkpJwk {
  kty: 'AKP';
  alg: string;
  pub: string;
}

/** A key pair's public JWK, or for a secret key (blinding) only its type: it has no public half. */
export type KeyJwk = PublicJwk | AkpJwk | { kty: 'oct' };

export interface GatewayKeyRow {
  kid: string;
  use: KeyUse;
  alg: string;
  hsm_id: string;
  label: string;
  public_jwk: KeyJwk;
  /** A post-quantum key's seed, wrapped by the token key hsm_id (null for keys held in the HSM). */
  wrapped_seed: Buffer | null;
  state: KeyState;
  created_at: Date;
  published_at: Date | null;
  activated_at: Date | null;
  deactivated_at: Date | null;
  destroyed_at: Date | null;
}

/** A committed promise to finish an HSM step (see migration 050). */
export interface KeyIntent {
  use: KeyUse;
  action: 'generate' | 'destroy';
  label: string | null;
  kid: string | null;
  activate: boolean;
  started_at: Date;
}

export async function listKeys(db: Queryable): Promise<GatewayKeyRow[]> {
  const { rows } = await db.query<GatewayKeyRow>('SELECT * FROM gateway_keys ORDER BY use, created_at, kid');
  return rows;
}

export async function keysOfUse(db: Queryable, use: KeyUse): Promise<GatewayKeyRow[]> {
  const { rows } = await db.query<GatewayKeyRow>('SELECT * FROM gateway_keys WHERE use = $1 ORDER BY created_at, kid', [
    use,
  ]);
  return rows;
}

export async function listIntents(db: Queryable, use?: KeyUse): Promise<KeyIntent[]> {
  const { rows } = await db.query<KeyIntent>(
    'SELECT * FROM key_intents WHERE $1::text IS NULL OR use = $1 ORDER BY started_at',
    [use ?? null],
  );
  return rows;
}

export async function recordIntent(
  db: Queryable,
  i: Pick<KeyIntent, 'use' | 'action' | 'label' | 'kid' | 'activate'>,
  now: Date,
): Promise<void> {
  await db.query(
    'INSERT INTO key_intents (use, action, label, kid, activate, started_at) VALUES ($1, $2, $3, $4, $5, $6)',
    [i.use, i.action, i.label, i.kid, i.activate, now],
  );
}

export async function clearIntent(db: Queryable, use: KeyUse, action: KeyIntent['action']): Promise<void> {
  await db.query('DELETE FROM key_intents WHERE use = $1 AND action = $2', [use, action]);
}

/** A new key enters the inventory published but not yet used (pre-activation). */
export async function insertPublishedKey(
  db: Queryable,
  row: Pick<GatewayKeyRow, 'kid' | 'use' | 'alg' | 'hsm_id' | 'label' | 'public_jwk'> & {
    wrapped_seed?: Buffer | null;
  },
  now: Date,
): Promise<void> {
  await db.query(
    `INSERT INTO gateway_keys (kid, use, alg, hsm_id, label, public_jwk, wrapped_seed, state, created_at, published_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pre-activation', $8, $8)`,
    [row.kid, row.use, row.alg, row.hsm_id, row.label, JSON.stringify(row.public_jwk), row.wrapped_seed ?? null, now],
  );
}

/** Old active -> deactivated, then new -> active (this order: the one-active index is checked per statement). */
export async function swapActive(db: Queryable, use: KeyUse, kid: string, now: Date): Promise<string | undefined> {
  const old = await db.query<{ kid: string }>(
    `UPDATE gateway_keys SET state = 'deactivated', deactivated_at = $2 WHERE use = $1 AND state = 'active' AND kid <> $3 RETURNING kid`,
    [use, now, kid],
  );
  const upd = await db.query(
    `UPDATE gateway_keys SET state = 'active', activated_at = $3 WHERE use = $1 AND kid = $2 AND state = 'pre-activation'`,
    [use, kid, now],
  );
  if (upd.rowCount !== 1) throw new Error(`key ${kid} is not a pre-activation ${use} key`);
  return old.rows[0]?.kid;
}

export async function markDestroyed(db: Queryable, kid: string, now: Date): Promise<boolean> {
  const r = await db.query(
    `UPDATE gateway_keys SET state = 'destroyed', destroyed_at = $2 WHERE kid = $1 AND state = 'deactivated'`,
    [kid, now],
  );
  return r.rowCount === 1;
}

import type pg from 'pg';
import type { PublicJwk } from '../../hsm/hsm.ts';

export type KeyUse = 'sig' | 'enc' | 'audit';
export type KeyState = 'pre-activation' | 'active' | 'deactivated' | 'destroyed';

export interface GatewayKeyRow {
  kid: string;
  use: KeyUse;
  alg: string;
  hsm_id: string;
  label: string;
  public_jwk: PublicJwk;
  state: KeyState;
  created_at: Date;
  published_at: Date | null;
  activated_at: Date | null;
  deactivated_at: Date | null;
  destroyed_at: Date | null;
}

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

export async function listKeys(db: Queryable): Promise<GatewayKeyRow[]> {
  const { rows } = await db.query<GatewayKeyRow>('SELECT * FROM gateway_keys ORDER BY use, created_at');
  return rows;
}

export async function insertKey(db: Queryable, row: Pick<GatewayKeyRow, 'kid' | 'use' | 'alg' | 'hsm_id' | 'label' | 'public_jwk' | 'state'>): Promise<void> {
  const now = new Date();
  await db.query(
    `INSERT INTO gateway_keys (kid, use, alg, hsm_id, label, public_jwk, state, published_at, activated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [row.kid, row.use, row.alg, row.hsm_id, row.label, JSON.stringify(row.public_jwk), row.state, now, row.state === 'active' ? now : null],
  );
}

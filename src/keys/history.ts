import type { Queryable } from '../db/pool.ts';
import { listKeys } from './store.ts';

/** One key's whole life, for audit packs and GET /admin/keys (public key included, never private material). */
export interface KeyHistoryEntry {
  kid: string;
  use: string;
  alg: string;
  state: string;
  hsm_label: string;
  /** For a post-quantum key, its RFC 9964 `AKP` public key (the wrapped seed never leaves the database). */
  public_jwk: Record<string, unknown>;
  created: string;
  published: string | null;
  activated: string | null;
  deactivated: string | null;
  destroyed: string | null;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/**
 * Every key the gateway ever held, in every state, oldest first. The rows are
 * never deleted, so signatures by retired keys (receipts, checkpoints) stay
 * verifiable from an audit export for as long as the export is kept.
 */
export async function keyHistory(db: Queryable): Promise<KeyHistoryEntry[]> {
  return (await listKeys(db))
    .sort((a, b) => a.created_at.getTime() - b.created_at.getTime() || a.kid.localeCompare(b.kid))
    .map((k) => ({
      kid: k.kid,
      use: k.use,
      alg: k.alg,
      state: k.state,
      hsm_label: k.label,
      // The blinding key is a secret key: its JWK says only that ({"kty":"oct"}), with no use to publish.
      public_jwk: {
        ...k.public_jwk,
        kid: k.kid,
        alg: k.alg,
        ...(k.use === 'blinding' ? {} : { use: k.use === 'enc' || k.use === 'pq-enc' ? 'enc' : 'sig' }),
      },
      created: k.created_at.toISOString(),
      published: iso(k.published_at),
      activated: iso(k.activated_at),
      deactivated: iso(k.deactivated_at),
      destroyed: iso(k.destroyed_at),
    }));
}

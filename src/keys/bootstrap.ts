import type pg from 'pg';
import type { Hsm } from '../../hsm/hsm.ts';
import { inTransaction } from '../db/pool.ts';
import { thumbprint } from '../jose/thumbprint.ts';
import { insertKey, listKeys, type KeyUse } from './store.ts';

// Serialises first-run key generation between processes starting together.
const BOOTSTRAP_LOCK = 7_273_002;

const DEFAULTS: Record<KeyUse, { alg: string; usage: 'sign' | 'derive' }> = {
  sig: { alg: 'ES256', usage: 'sign' },
  enc: { alg: 'ECDH-ES', usage: 'derive' },
  audit: { alg: 'ES256', usage: 'sign' },
};

/**
 * On first run, generate one active key per use inside the HSM (P-256: ES256
 * for signatures and checkpoints, ECDH-ES for envelopes). Then check that every
 * key the database says is usable really is on the token, so a gateway whose
 * HSM and database disagree refuses to start.
 */
export async function ensureGatewayKeys(pool: pg.Pool, hsm: Hsm): Promise<string[]> {
  const generated: string[] = [];
  await inTransaction(pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [BOOTSTRAP_LOCK]);
    const existing = await listKeys(client);
    for (const use of Object.keys(DEFAULTS) as KeyUse[]) {
      if (existing.some((k) => k.use === use && k.state === 'active')) continue;
      const { alg, usage } = DEFAULTS[use];
      const info = await hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, usage, `gateway-${use}-${new Date().toISOString()}`);
      const kid = thumbprint(info.publicJwk);
      await insertKey(client, { kid, use, alg, hsm_id: info.id, label: info.label, public_jwk: info.publicJwk, state: 'active' });
      generated.push(kid);
    }
  });
  for (const key of await listKeys(pool)) {
    if (key.state === 'destroyed') continue;
    if (!(await hsm.hasKey(key.hsm_id))) {
      throw new Error(`key ${key.kid} (${key.use}, ${key.state}) is in the database but not on the HSM token; the token and the database do not belong together`);
    }
  }
  return generated;
}

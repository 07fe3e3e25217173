import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packCompactJwe } from '../../src/jose/packed-jwe.ts';
import { createTestDatabase } from '../helpers/db.ts';

// Migration 070 converts envelopes stored as text by earlier versions with SQL (pg_temp.pack_jwe);
// it must produce exactly what packCompactJwe writes, or old pending deliveries would be sent altered.
let client: pg.Client;
beforeAll(async () => {
  client = new pg.Client({ connectionString: await createTestDatabase() });
  await client.connect();
  const sql = readFileSync(new URL('../../src/db/migrations/070_packed_envelopes.sql', import.meta.url), 'utf8');
  // Only the two functions: the ALTERs already ran when the test database was migrated.
  for (const fn of sql.match(/CREATE FUNCTION[\s\S]*?\$\$;/g) ?? []) await client.query(fn);
});
afterAll(async () => client?.end());

describe('migration 070 (text envelopes to packed bytea)', () => {
  it('packs like packCompactJwe for every ciphertext length modulo 3', async () => {
    const header = Buffer.from(
      JSON.stringify({
        alg: 'ECDH-ES',
        enc: 'A256GCM',
        kid: 'k',
        epk: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' },
        cty: 'JWT',
      }),
    ).toString('base64url');
    for (const n of [0, 1, 2, 3, 4, 5, 1000, 13_800, 13_801, 13_802]) {
      const jwe = `${header}..${randomBytes(12).toString('base64url')}.${randomBytes(n).toString('base64url')}.${randomBytes(16).toString('base64url')}`;
      const { rows } = await client.query<{ packed: Buffer }>('SELECT pg_temp.pack_jwe($1) AS packed', [jwe]);
      expect(rows[0]!.packed.equals(packCompactJwe(jwe))).toBe(true);
    }
  });
});

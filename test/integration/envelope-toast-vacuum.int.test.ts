import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../helpers/db.ts';

// Migration 080: no insert-triggered autovacuum on the TOAST tables of sealed envelopes (write-once
// data; rewriting each page once more stalled commits). Everything else keeps PostgreSQL's defaults.
let client: pg.Client;
beforeAll(async () => {
  client = new pg.Client({ connectionString: await createTestDatabase() });
  await client.connect();
});
afterAll(async () => client?.end());

async function options(table: string): Promise<{ main: string[]; toast: string[] }> {
  const { rows } = await client.query<{ main: string[] | null; toast: string[] | null }>(
    `SELECT m.reloptions AS main, t.reloptions AS toast
       FROM pg_class m JOIN pg_class t ON t.oid = m.reltoastrelid
      WHERE m.oid = $1::regclass`,
    [table],
  );
  return { main: rows[0]?.main ?? [], toast: rows[0]?.toast ?? [] };
}

describe('envelope TOAST autovacuum (migration 080)', () => {
  it('turns off insert-triggered vacuums on the envelope TOAST tables only', async () => {
    for (const table of ['deliveries', 'inbox_messages']) {
      const o = await options(table);
      expect(o.toast, table).toContain('autovacuum_vacuum_insert_threshold=-1');
      // The table's own autovacuum is untouched; its only option keeps receipts in the row (migration 270).
      expect(o.main, table).toEqual(['toast_tuple_target=8160']);
    }
    expect((await options('audit_log')).toast).toEqual([]);
  });
});

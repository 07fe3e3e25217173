import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { packCompactJwe } from '../../src/jose/packed-jwe.ts';
import { HYBRID_ALG } from '../../src/jose/pq/hybrid-jwe.ts';

// Migration 280 moves sealed envelopes out of the delivery and inbox rows into tables of their own, and sets
// the protocol version of earlier deliveries. Run on a database as the previous release left it: every
// envelope still held must arrive byte for byte, and every version must be the one it was sealed in.
const MIGRATIONS = join(import.meta.dirname, '../../src/db/migrations');
const MOVE = '280_sealed_envelopes_own_tables.sql';

let db: pg.Client;
beforeAll(async () => {
  const admin = new pg.Client({ connectionString: inject('pgAdminUrl') });
  await admin.connect();
  const name = `m_${randomBytes(6).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(inject('pgAdminUrl'));
  url.pathname = `/${name}`;
  db = new pg.Client({ connectionString: url.toString() });
  await db.connect();
  for (const f of readdirSync(MIGRATIONS).sort()) {
    if (f >= MOVE) break;
    await db.query(readFileSync(join(MIGRATIONS, f), 'utf8'));
  }
});
afterAll(async () => db?.end());

const b64u = (x: object) => Buffer.from(JSON.stringify(x)).toString('base64url');
const jwe = (alg: string) =>
  `${b64u({ alg, enc: 'A256GCM', kid: 'k' })}..${randomBytes(12).toString('base64url')}.${randomBytes(5000).toString('base64url')}.${randomBytes(16).toString('base64url')}`;

describe('migration 280 (sealed envelopes in their own tables)', () => {
  it('moves every held envelope unchanged, keeps purged rows purged, and sets each delivery protocol', async () => {
    const exchange = randomUUID();
    await db.query(
      `INSERT INTO exchanges (id, client_id, bundle_type, content_digest, content_length) VALUES ($1, 'ehr', 'message', 'x', 1)`,
      [exchange],
    );
    const v1 = jwe('ECDH-ES');
    const v2 = jwe(HYBRID_ALG);
    const held = [
      { id: randomUUID(), envelope: v1, protocol: 1 },
      { id: randomUUID(), envelope: v2, protocol: 2 },
    ];
    for (const d of held)
      await db.query(
        `INSERT INTO deliveries (id, exchange_id, partner_id, recipient_kid, envelope, envelope_digest) VALUES ($1, $2, 'p', 'k', $3, 'x')`,
        [d.id, exchange, packCompactJwe(d.envelope)],
      );
    // Purged before the move: the receipt's form is what says the version.
    const purged = [
      { id: randomUUID(), receipt: '{"payload":"x","signatures":[]}', protocol: 2 },
      { id: randomUUID(), receipt: 'eyJhbGciOiJFUzI1NiJ9.x.y', protocol: 1 },
    ];
    for (const d of purged)
      await db.query(
        `INSERT INTO deliveries (id, exchange_id, partner_id, recipient_kid, envelope, envelope_digest, state, receipt, delivered_at, purged_at)
         VALUES ($1, $2, 'p', 'k', NULL, 'x', 'delivered', $3, now(), now())`,
        [d.id, exchange, d.receipt],
      );
    const imagingExchange = randomUUID();
    const imaging = randomUUID();
    await db.query(
      `INSERT INTO imaging_exchanges (id, client_id, content_type, instances, content_length, content_digest) VALUES ($1, 'ehr', 'application/dicom', 1, 1, 'x')`,
      [imagingExchange],
    );
    await db.query(
      `INSERT INTO imaging_deliveries (id, exchange_id, partner_id, recipient_kid, announcement, manifest_envelope, manifest_digest, content_path, content_jwe_length)
       VALUES ($1, $2, 'p', 'k', 'a', $3, 'x', '/nowhere', 1)`,
      [imaging, imagingExchange, v2],
    );
    const message = { id: randomUUID(), envelope: jwe(HYBRID_ALG) };
    const purgedMessage = randomUUID();
    const inbox = (id: string, envelope: string | null) =>
      db.query(
        `INSERT INTO inbox_messages (id, sender, jti, exchange_id, envelope, envelope_digest, enc_kid, sender_kid, sender_jwk, receipt_id, receipt, state, acknowledged_at, purged_at)
         VALUES ($1, 's', $6, 'e', $2, 'x', 'k', 'k', '{}', $3, 'r', $4, $5, $5)`,
        [id, envelope, randomUUID(), envelope ? 'received' : 'acknowledged', envelope ? null : new Date(), id],
      );
    await inbox(message.id, message.envelope);
    await inbox(purgedMessage, null);

    await db.query(readFileSync(join(MIGRATIONS, MOVE), 'utf8'));

    const { rows: moved } = await db.query<{ delivery_id: string; envelope: Buffer }>(
      'SELECT delivery_id, envelope FROM delivery_envelopes',
    );
    expect(moved).toHaveLength(held.length);
    for (const d of held)
      expect(moved.find((m) => m.delivery_id === d.id)!.envelope.equals(packCompactJwe(d.envelope))).toBe(true);
    const { rows: versions } = await db.query<{ id: string; protocol: number }>('SELECT id, protocol FROM deliveries');
    for (const d of [...held, ...purged]) expect(versions.find((v) => v.id === d.id)!.protocol, d.id).toBe(d.protocol);
    expect((await db.query('SELECT protocol FROM imaging_deliveries WHERE id = $1', [imaging])).rows[0].protocol).toBe(
      2,
    );
    const { rows: inboxMoved } = await db.query('SELECT message_id, envelope FROM inbox_envelopes');
    expect(inboxMoved).toEqual([{ message_id: message.id, envelope: message.envelope }]);
    const { rows: columns } = await db.query<{ table_name: string; column_name: string }>(
      `SELECT table_name, column_name FROM information_schema.columns
        WHERE table_name IN ('deliveries', 'inbox_messages', 'imaging_deliveries') AND column_name IN ('envelope', 'held')`,
    );
    expect(columns).toEqual([]);
  });
});

import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leafHash, type AuditInput } from '../../src/audit/append.ts';
import { canonicalJson } from '../../src/audit/canonical.ts';
import { writeIntakes, type IntakeRecord } from '../../src/outbound/intake-store.ts';
import { unpackCompactJwe } from '../../src/jose/packed-jwe.ts';
import { createTestDatabase } from '../helpers/db.ts';

// writeIntakes writes exchanges, deliveries, jobs and numbered audit entries in one statement;
// the database computes each entry's index and leaf hash, which must be exactly what the
// audit verifier recomputes (canonical JSON, SHA-256(0x00 || entry)).
let pool: pg.Pool;
beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 4 });
});
afterAll(async () => {
  await pool.end();
});

function record(clientId: string, idempotencyKey: string | null, contentDigest = 'sha-256=AAAA'): IntakeRecord {
  const id = randomUUID();
  const deliveries = [0, 1].map((i) => ({
    id: randomUUID(),
    partnerId: `partner-${i}`,
    kid: 'kid',
    envelope: `eyJhbGciOiJFQ0RILUVTIn0..${randomBytes(12).toString('base64url')}.${randomBytes(100 + i).toString('base64url')}.${randomBytes(16).toString('base64url')}`,
    envelopeDigest: `sha-256=d${i}`,
    protocol: i === 0 ? (1 as const) : (2 as const),
  }));
  const audit: AuditInput[] = [
    {
      type: 'intake.accepted',
      outcome: 'success',
      agent: { type: 'client', id: clientId },
      entity: [{ type: 'exchange', id, digest: contentDigest }],
      detail: { recipients: 2, note: 'Zürich – 東京' },
    },
    ...deliveries.map((d) => ({
      type: 'exchange.sealed' as const,
      outcome: 'success' as const,
      entity: [{ type: 'delivery', id: d.id, digest: d.envelopeDigest }],
    })),
  ];
  return {
    exchange: {
      id,
      clientId,
      bundleType: 'message',
      contentDigest,
      contentLength: 10,
      idempotencyKey,
      purposeOfUse: ['TREAT'],
    },
    deliveries,
    audit,
  };
}

describe('writeIntakes (one statement per batch)', () => {
  it('writes rows, jobs and gapless audit entries whose hashes the verifier recomputes', async () => {
    const before = Number((await pool.query('SELECT size FROM audit_head')).rows[0].size);
    const now = new Date('2026-11-22T05:00:00.123Z');
    const batch = [record('clinic-ü', null), record('clinic-b', 'key-1')];
    const out = await writeIntakes(pool, batch, now);
    expect(out).toEqual(batch.map((r) => ({ exchangeId: r.exchange.id, replayed: false })));

    const { rows } = await pool.query<{
      idx: string;
      entry: string;
      leaf_hash: Buffer;
      type: string;
      outcome: string;
      recorded_at: Date;
    }>('SELECT idx, entry, leaf_hash, type, outcome, recorded_at FROM audit_log WHERE idx >= $1 ORDER BY idx', [
      before,
    ]);
    const expected = batch.flatMap((r) => r.audit);
    expect(rows.map((r) => Number(r.idx))).toEqual(expected.map((_, i) => before + i));
    rows.forEach((row, i) => {
      expect(row.entry).toBe(canonicalJson({ ...expected[i], index: before + i, recorded: now.toISOString() }));
      expect(row.leaf_hash.equals(leafHash(row.entry))).toBe(true);
      expect([row.type, row.outcome]).toEqual([expected[i]!.type, expected[i]!.outcome]);
      expect(row.recorded_at.toISOString()).toBe(now.toISOString());
    });
    expect(Number((await pool.query('SELECT size FROM audit_head')).rows[0].size)).toBe(before + expected.length);

    const ids = batch.flatMap((r) => r.deliveries.map((d) => d.id));
    const { rows: dl } = await pool.query<{ id: string; envelope: Buffer; protocol: number }>(
      `SELECT d.id, e.envelope, d.protocol FROM deliveries d JOIN delivery_envelopes e ON e.delivery_id = d.id
        WHERE d.id = ANY($1::uuid[])`,
      [ids],
    );
    expect(dl).toHaveLength(4);
    const sent = new Map(batch.flatMap((r) => r.deliveries.map((d) => [d.id, d])));
    for (const row of dl) {
      expect(unpackCompactJwe(row.envelope)).toBe(sent.get(row.id)!.envelope); // stored packed, rebuilt byte for byte
      expect(row.protocol).toBe(sent.get(row.id)!.protocol);
    }
    const { rows: jobs } = await pool.query(
      'SELECT key FROM graphile_worker._private_jobs WHERE key = ANY($1::text[])',
      [ids],
    );
    expect(jobs.map((j) => j.key).sort()).toEqual([...ids].sort());
  });

  it('a replayed Idempotency-Key writes nothing, not even audit entries, and a changed body is refused', async () => {
    const first = record('clinic-c', 'key-2');
    await writeIntakes(pool, [first]);
    const size = Number((await pool.query('SELECT size FROM audit_head')).rows[0].size);
    const again = record('clinic-c', 'key-2');
    const changed = record('clinic-c', 'key-2', 'sha-256=BBBB');
    const fresh = record('clinic-c', 'key-3');
    const out = await writeIntakes(pool, [again, changed, fresh]);
    expect(out[0]).toEqual({ exchangeId: first.exchange.id, replayed: true });
    expect(out[1]).toBeInstanceOf(Error);
    expect(out[2]).toEqual({ exchangeId: fresh.exchange.id, replayed: false });
    // Only the fresh submission's entries were appended, numbered right after the previous head.
    const { rows } = await pool.query<{ idx: string; entry: string }>(
      'SELECT idx, entry FROM audit_log WHERE idx >= $1 ORDER BY idx',
      [size],
    );
    expect(rows).toHaveLength(fresh.audit.length);
    expect(rows.every((r) => !r.entry.includes(again.exchange.id))).toBe(true);
    const { rows: dl } = await pool.query(
      'SELECT count(*)::int AS n FROM deliveries WHERE exchange_id = ANY($1::uuid[])',
      [[again.exchange.id, changed.exchange.id]],
    );
    expect(dl[0].n).toBe(0);
  });

  it('a batch of replays only (no delivery, no job, no entry to write) answers and changes nothing', async () => {
    const first = record('clinic-d', 'key-4');
    await writeIntakes(pool, [first]);
    const size = Number((await pool.query('SELECT size FROM audit_head')).rows[0].size);
    const jobs = Number((await pool.query('SELECT count(*) AS n FROM graphile_worker._private_jobs')).rows[0].n);
    const out = await writeIntakes(pool, [record('clinic-d', 'key-4')]);
    expect(out).toEqual([{ exchangeId: first.exchange.id, replayed: true }]);
    expect(Number((await pool.query('SELECT size FROM audit_head')).rows[0].size)).toBe(size);
    expect(Number((await pool.query('SELECT count(*) AS n FROM graphile_worker._private_jobs')).rows[0].n)).toBe(jobs);
  });

  it('concurrent repeats of one message (same message key, other Idempotency-Keys) in one batch make one exchange', async () => {
    const messageKey = { key: `identifier urn:x|${randomUUID()}`, expression: 'Bundle.identifier' };
    const withKey = (r: IntakeRecord, key = messageKey) => ({ ...r, exchange: { ...r.exchange, messageKey: key } });
    const a = withKey(record('clinic-e', 'key-5'));
    const b = withKey(record('clinic-e', 'key-6'));
    const c = withKey(record('clinic-e', null));
    const changed = withKey(record('clinic-e', null, 'sha-256=CCCC'));
    const out = await writeIntakes(pool, [a, b, c, changed]);
    const firsts = out.filter((o) => !(o instanceof Error) && !o.replayed);
    expect(firsts).toEqual([{ exchangeId: a.exchange.id, replayed: false }]);
    expect(out.slice(1, 3)).toEqual([
      { exchangeId: a.exchange.id, replayed: true },
      { exchangeId: a.exchange.id, replayed: true },
    ]);
    expect(out[3]).toBeInstanceOf(Error);
    expect((out[3] as { code?: string; expression?: string[] }).expression).toEqual(['Bundle.identifier']);
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM exchanges WHERE message_key = $1', [
      messageKey.key,
    ]);
    expect(rows[0].n).toBe(1);
    // Another client's message with the same key is its own.
    const other = await writeIntakes(pool, [withKey(record('clinic-f', null))]);
    expect(other[0]).toMatchObject({ replayed: false });
  });
});

import type { Queryable } from '../db/pool.ts';
import { DELIVERY_KINDS, type DeliveryKind } from '../outbound/delivery-kinds.ts';

/** Bucket bounds of the receipt lag histogram, in seconds (a receipt usually follows within seconds). */
export const RECEIPT_LAG_BUCKETS = [1, 5, 15, 60, 300, 900, 3600, 21600, 86400] as const;

export interface DeliveryCount {
  partner: string;
  kind: DeliveryKind;
  state: string;
  count: number;
}

export interface ReceiptLag {
  kind: DeliveryKind;
  /** Cumulative counts per bound of RECEIPT_LAG_BUCKETS, then +Inf. */
  buckets: number[];
  sum: number;
  count: number;
}

/** What the durable tables say now: the state half of /metrics. */
export interface StateSnapshot {
  deliveries: DeliveryCount[];
  oldestPending: { partner: string; ageSeconds: number }[];
  attempts: { kind: DeliveryKind; outcome: string; count: number }[];
  purged: { kind: string; count: number }[];
  receiptLag: ReceiptLag[];
  jobs: { task: string; count: number; oldestDueAgeSeconds: number | null }[];
  activeKeys: { use: string; activatedAt: Date }[];
  partnerKeyExpiry: { partner: string; kid: string; seconds: number }[];
  checkpointAgeSeconds: number | null;
  oldestUnsignedAgeSeconds: number | null;
  jwksChecks: { partner: string; ok: boolean; ageSeconds: number }[];
  partnerLogs: { partner: string; inconsistent: boolean }[];
}

const kinds = Object.values(DELIVERY_KINDS);
const num = (v: unknown) => Number(v ?? 0);

async function deliveryStates(db: Queryable): Promise<StateSnapshot['deliveries']> {
  const parts = kinds.map(
    (k) => `SELECT partner_id, '${k.kind}' AS kind, state, count(*) AS n FROM ${k.table} GROUP BY partner_id, state`,
  );
  const { rows } = await db.query<{ partner_id: string; kind: DeliveryKind; state: string; n: string }>(
    parts.join(' UNION ALL '),
  );
  return rows.map((r) => ({ partner: r.partner_id, kind: r.kind, state: r.state, count: num(r.n) }));
}

async function oldestPending(db: Queryable): Promise<StateSnapshot['oldestPending']> {
  const parts = kinds.map((k) => `SELECT partner_id, created_at FROM ${k.table} WHERE state = 'pending'`);
  const { rows } = await db.query<{ partner_id: string; age: number }>(
    `SELECT partner_id, extract(epoch FROM now() - min(created_at))::float8 AS age
       FROM (${parts.join(' UNION ALL ')}) p GROUP BY partner_id`,
  );
  return rows.map((r) => ({ partner: r.partner_id, ageSeconds: Math.max(0, num(r.age)) }));
}

async function attempts(db: Queryable): Promise<StateSnapshot['attempts']> {
  const parts = kinds.map(
    (k) => `SELECT '${k.kind}' AS kind, outcome, count(*) AS n FROM ${k.attemptsTable} GROUP BY outcome`,
  );
  const { rows } = await db.query<{ kind: DeliveryKind; outcome: string; n: string }>(parts.join(' UNION ALL '));
  return rows.map((r) => ({ kind: r.kind, outcome: r.outcome, count: num(r.n) }));
}

/** Tombstones left by retention (src/retention/purge.ts), which only ever grow: a counter from the tables. */
async function purged(db: Queryable): Promise<StateSnapshot['purged']> {
  const { rows } = await db.query<{ kind: string; n: string }>(
    `SELECT 'bundle' AS kind, count(*) AS n FROM deliveries WHERE purged_at IS NOT NULL
     UNION ALL SELECT 'imaging', count(*) FROM imaging_deliveries WHERE purged_at IS NOT NULL
     UNION ALL SELECT CASE WHEN c.message_id IS NULL THEN 'inbox' ELSE 'inbox-imaging' END, count(*)
                 FROM inbox_messages m LEFT JOIN imaging_inbox_content c ON c.message_id = m.id
                WHERE m.purged_at IS NOT NULL GROUP BY 1`,
  );
  return rows.map((r) => ({ kind: r.kind, count: num(r.n) }));
}

async function receiptLag(db: Queryable): Promise<ReceiptLag[]> {
  const lag = 'extract(epoch FROM delivered_at - created_at)';
  const buckets = RECEIPT_LAG_BUCKETS.map((b, i) => `count(*) FILTER (WHERE ${lag} <= ${b}) AS b${i}`).join(', ');
  const parts = kinds.map(
    (k) =>
      `SELECT '${k.kind}' AS kind, ${buckets}, coalesce(sum(${lag}), 0)::float8 AS total, count(*) AS n
         FROM ${k.table} WHERE state = 'delivered' AND delivered_at IS NOT NULL`,
  );
  const { rows } = await db.query<Record<string, string> & { kind: DeliveryKind }>(parts.join(' UNION ALL '));
  return rows.map((r) => ({
    kind: r.kind,
    buckets: [...RECEIPT_LAG_BUCKETS.map((_, i) => num(r[`b${i}`])), num(r.n)],
    sum: num(r.total),
    count: num(r.n),
  }));
}

async function jobs(db: Queryable): Promise<StateSnapshot['jobs']> {
  const { rows } = await db.query<{ task: string; n: string; age: number | null }>(
    `SELECT t.identifier AS task, count(*) AS n,
            extract(epoch FROM now() - min(j.run_at) FILTER (WHERE j.run_at <= now() AND j.locked_at IS NULL))::float8 AS age
       FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id
      GROUP BY t.identifier`,
  );
  return rows.map((r) => ({
    task: r.task,
    count: num(r.n),
    oldestDueAgeSeconds: r.age === null ? null : Math.max(0, num(r.age)),
  }));
}

async function keysAndChecks(db: Queryable) {
  const [active, partnerKeys, checkpoint, checks, unsigned] = await Promise.all([
    db.query<{ use: string; activated_at: Date }>(
      `SELECT use, activated_at FROM gateway_keys WHERE state = 'active' AND activated_at IS NOT NULL`,
    ),
    db.query<{ partner_id: string; kid: string; seconds: number }>(
      `SELECT partner_id, kid, ((jwk->>'exp')::float8 - extract(epoch FROM now()))::float8 AS seconds
         FROM partner_keys_seen
        WHERE disappeared_at IS NULL AND replaced_at IS NULL AND jsonb_typeof(jwk->'exp') = 'number'`,
    ),
    db.query<{ age: number | null }>(
      `SELECT extract(epoch FROM now() - max(issued_at))::float8 AS age FROM audit_checkpoints`,
    ),
    db.query<{ partner_id: string; ok: boolean; age: number }>(
      `SELECT partner_id, ok, extract(epoch FROM now() - checked_at)::float8 AS age FROM partner_jwks_checks`,
    ),
    // Entries past the newest checkpoint's tree size are not yet signed (idx is the leaf index, from 0).
    db.query<{ age: number | null }>(
      `SELECT extract(epoch FROM now() - min(recorded_at))::float8 AS age FROM audit_log
        WHERE idx >= coalesce((SELECT max(tree_size) FROM audit_checkpoints), 0)`,
    ),
  ]);
  const age = (r: { age: number | null } | undefined) => (r?.age == null ? null : Math.max(0, num(r.age)));
  return {
    activeKeys: active.rows.map((r) => ({ use: r.use, activatedAt: r.activated_at })),
    partnerKeyExpiry: partnerKeys.rows.map((r) => ({ partner: r.partner_id, kid: r.kid, seconds: num(r.seconds) })),
    checkpointAgeSeconds: age(checkpoint.rows[0]),
    oldestUnsignedAgeSeconds: age(unsigned.rows[0]),
    jwksChecks: checks.rows.map((r) => ({ partner: r.partner_id, ok: r.ok, ageSeconds: Math.max(0, num(r.age)) })),
  };
}

async function partnerLogs(db: Queryable): Promise<StateSnapshot['partnerLogs']> {
  const { rows } = await db.query<{ partner_id: string; inconsistent: boolean }>(
    'SELECT partner_id, inconsistent_at IS NOT NULL AS inconsistent FROM partner_logs',
  );
  return rows.map((r) => ({ partner: r.partner_id, inconsistent: r.inconsistent }));
}

/** A few aggregate queries, run side by side; each reads ids, states and times only (no content). */
export async function readState(db: Queryable): Promise<StateSnapshot> {
  const [d, o, a, u, l, j, k, p] = await Promise.all([
    deliveryStates(db),
    oldestPending(db),
    attempts(db),
    purged(db),
    receiptLag(db),
    jobs(db),
    keysAndChecks(db),
    partnerLogs(db),
  ]);
  return { deliveries: d, oldestPending: o, attempts: a, purged: u, receiptLag: l, jobs: j, ...k, partnerLogs: p };
}

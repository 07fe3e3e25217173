import { rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { appendAudit } from '../audit/append.ts';
import type { Config } from '../config.ts';
import { inTransaction } from '../db/pool.ts';
import type { GatewayContext } from '../gateway-context.ts';

export type PurgeKind = 'bundle' | 'imaging' | 'inbox' | 'inbox-imaging';

/**
 * What retention purges, per kind: only content that was handed over (a
 * delivery whose signed receipt was verified, an inbox message the EHR
 * acknowledged or was forwarded), never a pending or failed delivery, a
 * message still waiting for the EHR, nor an exchange under a legal hold. Each statement takes the oldest `$2`
 * rows handed over before `$1`, skipping rows another transaction holds (a
 * delivery being recorded, an acknowledgement), and leaves a tombstone: ids,
 * digests and receipts stay, the envelope is deleted (a bundle's or inbox
 * message's row in its envelope table; an imaging delivery's manifest column
 * becomes NULL) and purged_at is set. It returns each id,
 * its digest and the sealed file to remove, if any.
 */
interface PurgeSpec {
  kind: PurgeKind;
  retention: (c: Config) => number;
  /** The audit entity type of each purged row (the type its earlier entries named it by). */
  entity: 'delivery' | 'inbox-message';
  sql: string;
}

/** An exchange under a legal hold (src/retention/hold.ts) is kept whatever its age. */
const notHeld = (exchangeId: string) =>
  `NOT EXISTS (SELECT 1 FROM retention_holds h WHERE h.exchange_id = ${exchangeId}::text)`;

const oldestDelivered = (table: string) =>
  `SELECT id FROM ${table} d WHERE state = 'delivered' AND purged_at IS NULL AND delivered_at < $1
      AND ${notHeld('d.exchange_id')}
    ORDER BY delivered_at LIMIT $2 FOR UPDATE SKIP LOCKED`;

const takenAt = 'coalesce(acknowledged_at, forwarded_at)';
const oldestTaken = (imaging: boolean) =>
  `SELECT id FROM inbox_messages i
    WHERE state IN ('forwarded', 'acknowledged') AND purged_at IS NULL AND ${takenAt} < $1
      AND ${imaging ? '' : 'NOT '}EXISTS (SELECT 1 FROM imaging_inbox_content c WHERE c.message_id = i.id)
      AND ${notHeld('i.exchange_id')}
    ORDER BY ${takenAt} LIMIT $2 FOR UPDATE SKIP LOCKED`;

/** Sealed bundle and inbox envelopes live in tables of their own (migration 280): the batch's rows there are deleted. */
const envelopesGone = (table: 'delivery_envelopes' | 'inbox_envelopes', key: 'delivery_id' | 'message_id') =>
  `gone AS (DELETE FROM ${table} e USING b WHERE e.${key} = b.id)`;

export const PURGE_SPECS: readonly PurgeSpec[] = [
  {
    kind: 'bundle',
    retention: (c) => c.retentionOutbound,
    entity: 'delivery',
    sql: `WITH b AS (${oldestDelivered('deliveries')}), ${envelopesGone('delivery_envelopes', 'delivery_id')}
          UPDATE deliveries d SET purged_at = now() FROM b
           WHERE d.id = b.id RETURNING d.id, d.envelope_digest AS digest, NULL::text AS path`,
  },
  {
    kind: 'imaging',
    retention: (c) => c.retentionImaging,
    entity: 'delivery',
    sql: `UPDATE imaging_deliveries d SET manifest_envelope = NULL, purged_at = now() FROM (${oldestDelivered('imaging_deliveries')}) b
           WHERE d.id = b.id RETURNING d.id, d.manifest_digest AS digest, d.content_path AS path`,
  },
  {
    kind: 'inbox',
    retention: (c) => c.retentionInbox,
    entity: 'inbox-message',
    sql: `WITH b AS (${oldestTaken(false)}), ${envelopesGone('inbox_envelopes', 'message_id')}
          UPDATE inbox_messages m SET purged_at = now() FROM b
           WHERE m.id = b.id RETURNING m.id, m.envelope_digest AS digest, NULL::text AS path`,
  },
  {
    kind: 'inbox-imaging',
    retention: (c) => c.retentionImaging,
    entity: 'inbox-message',
    sql: `WITH b AS (${oldestTaken(true)}), ${envelopesGone('inbox_envelopes', 'message_id')}
          UPDATE inbox_messages m SET purged_at = now() FROM b
           WHERE m.id = b.id
       RETURNING m.id, m.envelope_digest AS digest, (SELECT c.content_path FROM imaging_inbox_content c WHERE c.message_id = m.id) AS path`,
  },
];

/** One run's longest time: a backlog (retention first turned on) is worked off over several runs, never holding a shutdown for long. */
const RUN_BUDGET_MS = 5 * 60_000;

export type RetentionContext = Pick<GatewayContext, 'pool' | 'config' | 'logger'>;

/**
 * One batch of one kind, on one short transaction: the tombstones, the
 * batch's `content.purged` audit entry, and the sealed files removed before
 * the commit, so that no file outlives a committed purge (should the commit
 * fail, the rows are still due and the next run purges them again).
 */
async function purgeBatch(ctx: RetentionContext, spec: PurgeSpec, cutoff: Date): Promise<number> {
  return inTransaction(ctx.pool, async (client) => {
    const { rows } = await client.query<{ id: string; digest: string; path: string | null }>(spec.sql, [
      cutoff,
      ctx.config.retentionBatch,
    ]);
    if (rows.length === 0) return 0;
    await appendAudit(client, [
      {
        type: 'content.purged',
        outcome: 'success',
        agent: { type: 'gateway', id: ctx.config.org },
        entity: rows.map((r) => ({ type: spec.entity, id: r.id, digest: r.digest })),
        detail: { kind: spec.kind, count: rows.length, handedOverBefore: cutoff.toISOString() },
      },
    ]);
    for (const r of rows) if (r.path) await rm(r.path, { force: true });
    return rows.length;
  });
}

/**
 * Purge everything past its retention period, kind by kind, in bounded
 * batches with RETENTION_PAUSE between them, so intake and receipts are never
 * held behind a long statement. A kind whose retention is 0 is kept forever.
 * The space freed is reused by new rows once autovacuum has seen the dead
 * tuples (deletions and updates still trigger it on the envelope TOAST
 * tables); the imaging files' space is returned at once.
 */
export async function purgeExpired(
  ctx: RetentionContext,
  options: { now?: Date; signal?: AbortSignal; budgetMs?: number } = {},
): Promise<Record<PurgeKind, number>> {
  const now = options.now ?? new Date();
  const until = Date.now() + (options.budgetMs ?? RUN_BUDGET_MS);
  // A stop request (graceful shutdown) or the run's budget ends it between batches; the next run goes on.
  const stop = () => options.signal?.aborted === true || Date.now() >= until;
  const purged: Record<PurgeKind, number> = { bundle: 0, imaging: 0, inbox: 0, 'inbox-imaging': 0 };
  for (const spec of PURGE_SPECS) {
    const retention = spec.retention(ctx.config);
    if (retention === 0) continue;
    const cutoff = new Date(now.getTime() - retention);
    for (;;) {
      if (stop()) break;
      const n = await purgeBatch(ctx, spec, cutoff);
      purged[spec.kind] += n;
      if (n < ctx.config.retentionBatch) break;
      await sleep(ctx.config.retentionPause);
    }
  }
  if (Object.values(purged).some((n) => n > 0)) ctx.logger.info({ purged }, 'retention purged sealed content');
  return purged;
}

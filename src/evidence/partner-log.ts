import type pg from 'pg';
import type { Queryable } from '../db/pool.ts';
import { inTransaction } from '../db/pool.ts';
import { appendAudit, type AuditInput } from '../audit/append.ts';

/** What we hold of a partner's audit log: its newest checkpoint we verified, and an open alarm if any. */
export interface PartnerLogState {
  partnerId: string;
  origin: string;
  treeSize: number;
  rootHash: Buffer;
  checkedAt: Date;
  inconsistentAt: Date | null;
  inconsistency: string | null;
}

export async function partnerLogState(db: Queryable, partnerId: string): Promise<PartnerLogState | undefined> {
  const { rows } = await db.query<{
    partner_id: string;
    origin: string;
    tree_size: string;
    root_hash: Buffer;
    checked_at: Date;
    inconsistent_at: Date | null;
    inconsistency: string | null;
  }>('SELECT * FROM partner_logs WHERE partner_id = $1', [partnerId]);
  const r = rows[0];
  return (
    r && {
      partnerId: r.partner_id,
      origin: r.origin,
      treeSize: Number(r.tree_size),
      rootHash: r.root_hash,
      checkedAt: r.checked_at,
      inconsistentAt: r.inconsistent_at,
      inconsistency: r.inconsistency,
    }
  );
}

/**
 * The active partners an evidence run may have work for: a delivered receipt
 * without evidence, or a log we already follow (its consistency is rechecked
 * every PARTNER_LOG_CHECK). The run itself decides whether it is due.
 */
export async function partnersToCheck(db: Queryable): Promise<string[]> {
  const lacking = (table: string) =>
    `SELECT DISTINCT d.partner_id FROM ${table} d
      WHERE d.state = 'delivered' AND d.receipt IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM delivery_evidence e WHERE e.delivery_id = d.id)`;
  const { rows } = await db.query<{ partner_id: string }>(
    `SELECT p.id AS partner_id FROM partners p
      WHERE p.status = 'active'
        AND p.id IN (${lacking('deliveries')} UNION ${lacking('imaging_deliveries')} UNION SELECT partner_id FROM partner_logs)
      ORDER BY p.id`,
  );
  return rows.map((r) => r.partner_id);
}

/**
 * An operator clears a partner's log alarm after investigating it: the log
 * state is forgotten, so the partner's next checkpoint is trusted afresh (the
 * checkpoints kept so far, and the alarm's audit entry, stay). Audited.
 */
export async function clearPartnerLogAlarm(
  pool: pg.Pool,
  partnerId: string,
  actor: NonNullable<AuditInput['agent']>,
): Promise<boolean> {
  return inTransaction(pool, async (db) => {
    const { rows } = await db.query<{ inconsistency: string | null }>(
      'DELETE FROM partner_logs WHERE partner_id = $1 AND inconsistent_at IS NOT NULL RETURNING inconsistency',
      [partnerId],
    );
    if (!rows[0]) return false;
    await appendAudit(db, [
      {
        type: 'partner-log.cleared',
        outcome: 'success',
        agent: actor,
        entity: [{ type: 'partner', id: partnerId }],
        detail: { reason: rows[0].inconsistency },
      },
    ]);
    return true;
  });
}

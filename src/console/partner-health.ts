import type { Queryable } from '../db/pool.ts';
import { DELIVERY_KINDS } from '../outbound/delivery-kinds.ts';
import { listPartners, type Partner } from '../directory/store.ts';

/** The window the failure rate is counted over. */
export const FAILURE_WINDOW_HOURS = 24;

export interface PartnerHealth {
  partner: Partner;
  lastDelivered: Date | null;
  oldestPending: Date | null;
  pending: number;
  /** Failed among deliveries settled in the window, 0..1; null when none settled. */
  failureRate: number | null;
  /** When the partner's JWKS was last refreshed by the job, and whether that worked. */
  keysCheckedAt: Date | null;
  keysOk: boolean | null;
  /** The partner's audit log as our evidence checks see it: the tree size we hold, and an open inconsistency. */
  log: { treeSize: number; checkedAt: Date; inconsistency: string | null } | null;
}

interface Row {
  partner_id: string;
  last_delivered: Date | null;
  oldest_pending: Date | null;
  pending: string;
  settled: string;
  failed: string;
}

/**
 * Each partner's delivery health for the operator console, from the delivery
 * tables of both kinds, the key refresh record and the partner's audit log
 * as our evidence checks hold it: figures from the database,
 * nothing kept in memory.
 */
export async function partnerHealth(db: Queryable): Promise<PartnerHealth[]> {
  const union = Object.values(DELIVERY_KINDS)
    .map((l) => `SELECT partner_id, state, delivered_at, created_at, updated_at FROM ${l.table}`)
    .join(' UNION ALL ');
  const { rows } = await db.query<Row>(
    `SELECT partner_id, max(delivered_at) AS last_delivered,
            min(created_at) FILTER (WHERE state = 'pending') AS oldest_pending,
            count(*) FILTER (WHERE state = 'pending') AS pending,
            count(*) FILTER (WHERE state <> 'pending' AND updated_at > now() - make_interval(hours => $1)) AS settled,
            count(*) FILTER (WHERE state = 'failed' AND updated_at > now() - make_interval(hours => $1)) AS failed
       FROM (${union}) d GROUP BY partner_id`,
    [FAILURE_WINDOW_HOURS],
  );
  const checks = await db.query<{ partner_id: string; checked_at: Date; ok: boolean }>(
    'SELECT partner_id, checked_at, ok FROM partner_jwks_checks',
  );
  const logs = await db.query<{
    partner_id: string;
    tree_size: string;
    checked_at: Date;
    inconsistency: string | null;
  }>(
    'SELECT partner_id, tree_size, checked_at, CASE WHEN inconsistent_at IS NOT NULL THEN inconsistency END AS inconsistency FROM partner_logs',
  );
  const logOf = new Map(logs.rows.map((l) => [l.partner_id, l]));
  const byPartner = new Map(rows.map((r) => [r.partner_id, r]));
  const checkOf = new Map(checks.rows.map((c) => [c.partner_id, c]));
  return (await listPartners(db)).map((partner) => {
    const r = byPartner.get(partner.id);
    const settled = Number(r?.settled ?? 0);
    const check = checkOf.get(partner.id);
    return {
      partner,
      lastDelivered: r?.last_delivered ?? null,
      oldestPending: r?.oldest_pending ?? null,
      pending: Number(r?.pending ?? 0),
      failureRate: settled > 0 ? Number(r?.failed ?? 0) / settled : null,
      keysCheckedAt: check?.checked_at ?? null,
      keysOk: check?.ok ?? null,
      log: (() => {
        const l = logOf.get(partner.id);
        return l ? { treeSize: Number(l.tree_size), checkedAt: l.checked_at, inconsistency: l.inconsistency } : null;
      })(),
    };
  });
}

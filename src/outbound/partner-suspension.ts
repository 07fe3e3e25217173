import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import { inTransaction } from '../db/pool.ts';
import { setPartnerStatus, setPqDowngrade, type Partner, type PqDowngrade } from '../directory/store.ts';
import { GatewayError } from '../errors.ts';
import { isPlainIdentifier } from '../ids.ts';
import { DELIVERY_KINDS } from './delivery-kinds.ts';

export { holdsDeliveries } from '../directory/store.ts';

/**
 * Suspending a partner stops everything to it: intake refuses it as a
 * recipient (422 UNKNOWN_RECIPIENT, src/outbound/submission.ts) and the
 * delivery jobs leave its pending deliveries untouched, with no attempt
 * spent. Resuming queues every waiting delivery again with a fresh horizon,
 * so a long suspension does not make them expire on their first attempt.
 */

type Actor = NonNullable<AuditInput['agent']>;

export async function suspendPartner(pool: pg.Pool, id: string, actor: Actor): Promise<void> {
  await changeStatus(pool, id, 'suspended', actor);
}

/** Resume a partner; answers how many waiting deliveries were queued again. */
export async function resumePartner(pool: pg.Pool, id: string, actor: Actor): Promise<number> {
  return changeStatus(pool, id, 'active', actor);
}

/**
 * A partner that stopped publishing its post-quantum keys. Under
 * PQ_DOWNGRADE=hold the gateway marks it held at the first intake that sees
 * it: its deliveries are sealed as v1 (the only keys it publishes) but wait,
 * pending and with no attempt spent, so nothing is sent as v1 unless an
 * operator allows it. v2 deliveries to it (once its keys return) are not held.
 */
export type DowngradeDecision = 'hold' | 'allow-v1';
type DowngradeCause = 'operator' | 'policy';

/** Mark a partner held (idempotent: audited only when it changes). */
export async function holdForDowngrade(pool: pg.Pool, id: string, actor: Actor): Promise<void> {
  await inTransaction(pool, async (db) => {
    const before = await setPqDowngrade(db, id, 'held');
    if (before === undefined || before === 'held') return;
    await appendAudit(db, [
      { type: 'partner.downgrade-detected', outcome: 'success', agent: actor, entity: [{ type: 'partner', id }] },
    ]);
  });
}

/** Forget an earlier decision once the partner publishes its post-quantum keys again (v2 resumes; a later loss holds again). */
export async function clearDowngradeAllowance(pool: pg.Pool, id: string): Promise<void> {
  await pool.query(
    "UPDATE partners SET pq_downgrade = NULL, updated_at = now() WHERE id = $1 AND pq_downgrade = 'allow-v1'",
    [id],
  );
}

/**
 * Decide about a partner without post-quantum keys: allow-v1 queues its
 * waiting deliveries again (fresh horizon, as resume does); hold keeps them
 * (or the next ones) waiting. Answers how many were queued again.
 */
export async function decideDowngrade(
  pool: pg.Pool,
  id: string,
  decision: DowngradeDecision,
  actor: Actor,
  cause: DowngradeCause = 'operator',
): Promise<number> {
  if (!isPlainIdentifier(id)) throw new GatewayError('NOT_FOUND', 'no such partner');
  const stored: PqDowngrade = decision === 'hold' ? 'held' : 'allow-v1';
  return inTransaction(pool, async (db) => {
    const before = await setPqDowngrade(db, id, stored);
    if (before === undefined) throw new GatewayError('NOT_FOUND', `no partner ${JSON.stringify(id)}`);
    const requeued = stored === 'allow-v1' && before === 'held' ? await requeueWaiting(db, id) : 0;
    await appendAudit(db, [
      {
        type: 'partner.downgrade-decided',
        outcome: 'success',
        agent: actor,
        entity: [{ type: 'partner', id }],
        detail: { decision, cause, requeued },
      },
    ]);
    return requeued;
  });
}

/** Queue every pending delivery to a partner again, with a fresh retry round. */
async function requeueWaiting(db: pg.PoolClient, id: string): Promise<number> {
  let requeued = 0;
  for (const l of Object.values(DELIVERY_KINDS)) {
    const { rows: waiting } = await db.query<{ id: string }>(
      `UPDATE ${l.table} SET round_started_at = now(), next_attempt_at = NULL, updated_at = now()
        WHERE partner_id = $1 AND state = 'pending' RETURNING id`,
      [id],
    );
    if (waiting.length)
      await l.enqueue(
        db,
        waiting.map((w) => w.id),
      );
    requeued += waiting.length;
  }
  return requeued;
}

async function changeStatus(pool: pg.Pool, id: string, status: Partner['status'], actor: Actor): Promise<number> {
  if (!isPlainIdentifier(id)) throw new GatewayError('NOT_FOUND', 'no such partner');
  return inTransaction(pool, async (db) => {
    const { rows } = await db.query<{ status: string }>('SELECT status FROM partners WHERE id = $1 FOR UPDATE', [id]);
    const current = rows[0];
    if (!current) throw new GatewayError('NOT_FOUND', `no partner ${JSON.stringify(id)}`);
    if (current.status === status)
      throw new GatewayError('CONFLICT', `partner ${id} is already ${status === 'active' ? 'active' : 'suspended'}`);
    await setPartnerStatus(db, id, status);
    const requeued = status === 'active' ? await requeueWaiting(db, id) : 0;
    await appendAudit(db, [
      {
        type: status === 'active' ? 'partner.resumed' : 'partner.suspended',
        outcome: 'success',
        agent: actor,
        entity: [{ type: 'partner', id }],
        ...(status === 'active' ? { detail: { requeued } } : {}),
      },
    ]);
    return requeued;
  });
}

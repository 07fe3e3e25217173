import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import { inTransaction } from '../db/pool.ts';
import { setPartnerStatus, type Partner } from '../directory/store.ts';
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

async function changeStatus(pool: pg.Pool, id: string, status: Partner['status'], actor: Actor): Promise<number> {
  if (!isPlainIdentifier(id)) throw new GatewayError('NOT_FOUND', 'no such partner');
  return inTransaction(pool, async (db) => {
    const { rows } = await db.query<{ status: string }>('SELECT status FROM partners WHERE id = $1 FOR UPDATE', [id]);
    const current = rows[0];
    if (!current) throw new GatewayError('NOT_FOUND', `no partner ${JSON.stringify(id)}`);
    if (current.status === status)
      throw new GatewayError('CONFLICT', `partner ${id} is already ${status === 'active' ? 'active' : 'suspended'}`);
    await setPartnerStatus(db, id, status);
    let requeued = 0;
    if (status === 'active') {
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
    }
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

import { existsSync } from 'node:fs';
import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { inTransaction } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';
import { isUuid } from '../ids.ts';
import { enqueueImagingDeliveries } from './imaging/store.ts';
import { enqueueDeliveries } from './intake-store.ts';

export type DeliveryKind = 'bundle' | 'imaging';

interface LedgerRow {
  state: string;
  exchange_id: string;
  content_path?: string;
}

/**
 * The two delivery ledgers share their state and retry-round columns, so one
 * operator view and one retry serve both. Only the table, the job, the
 * exchange entity and what must still exist to send again differ.
 */
interface Ledger {
  kind: DeliveryKind;
  table: string;
  columns: string;
  exchangeEntity: string;
  enqueue(db: pg.PoolClient, ids: string[]): Promise<void>;
  /** Why the stored sealed content can no longer be sent, if it cannot. */
  unsendable(row: LedgerRow): string | undefined;
}

const LEDGERS: Ledger[] = [
  {
    kind: 'bundle',
    table: 'deliveries',
    columns: 'state, exchange_id',
    exchangeEntity: 'exchange',
    enqueue: enqueueDeliveries,
    unsendable: () => undefined,
  },
  {
    kind: 'imaging',
    table: 'imaging_deliveries',
    columns: 'state, exchange_id, content_path',
    exchangeEntity: 'imaging-exchange',
    enqueue: enqueueImagingDeliveries,
    // The envelope of a bundle lives in its row; imaging content lives in a file that may have been removed.
    unsendable: (r) =>
      existsSync(r.content_path!) ? undefined : 'its sealed content file is gone; send the study again',
  },
];

/**
 * Operator retry of a failed delivery of either kind: a fresh attempt budget
 * and horizon, the same sealed content and delivery id.
 */
export async function retryDelivery(
  ctx: Pick<GatewayContext, 'pool'>,
  id: string,
  actor: NonNullable<AuditInput['agent']>,
): Promise<DeliveryKind> {
  if (!isUuid(id)) throw new GatewayError('NOT_FOUND', `no delivery ${id}`);
  return inTransaction(ctx.pool, async (db) => {
    for (const l of LEDGERS) {
      const { rows } = await db.query<LedgerRow>(`SELECT ${l.columns} FROM ${l.table} WHERE id = $1 FOR UPDATE`, [id]);
      const d = rows[0];
      if (!d) continue;
      if (d.state !== 'failed')
        throw new GatewayError(
          'CONFLICT',
          `${l.kind} delivery ${id} is ${d.state}; only failed deliveries can be retried`,
        );
      const why = l.unsendable(d);
      if (why) throw new GatewayError('CONFLICT', `${l.kind} delivery ${id} cannot be retried: ${why}`);
      await db.query(
        `UPDATE ${l.table} SET state = 'pending', round_attempts = 0, round_started_at = now(), next_attempt_at = NULL, updated_at = now() WHERE id = $1`,
        [id],
      );
      await l.enqueue(db, [id]);
      await appendAudit(db, [
        {
          type: 'delivery.retried',
          outcome: 'success',
          agent: actor,
          entity: [
            { type: 'delivery', id },
            { type: l.exchangeEntity, id: d.exchange_id },
          ],
          detail: { kind: l.kind },
        },
      ]);
      return l.kind;
    }
    throw new GatewayError('NOT_FOUND', `no delivery ${id}`);
  });
}

export interface DeliverySummary {
  id: string;
  kind: DeliveryKind;
  exchange_id: string;
  partner_id: string;
  state: string;
  attempts: number;
  last_error: string | null;
  updated_at: Date;
}

/** The latest deliveries of both kinds, newest first. */
export async function listDeliveries(
  db: Pick<pg.Pool, 'query'>,
  state: string | undefined,
  limit = 100,
): Promise<DeliverySummary[]> {
  const select = (
    l: Ledger,
  ) => `(SELECT id, '${l.kind}' AS kind, exchange_id, partner_id, state, attempts, last_error, updated_at FROM ${l.table}
    WHERE ($1::text IS NULL OR state = $1) ORDER BY updated_at DESC LIMIT $2)`;
  const { rows } = await db.query<DeliverySummary>(
    `${LEDGERS.map(select).join(' UNION ALL ')} ORDER BY updated_at DESC LIMIT $2`,
    [state ?? null, limit],
  );
  return rows;
}

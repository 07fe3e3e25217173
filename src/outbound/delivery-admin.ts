import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { inTransaction } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';
import { DELIVERY_KINDS, type DeliveryKind, type DeliveryKindSpec, type RetryRow } from './delivery-kinds.ts';
import { isUuid } from '../ids.ts';

export type { DeliveryKind } from './delivery-kinds.ts';

const LEDGERS = Object.values(DELIVERY_KINDS);

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
      const { rows } = await db.query<RetryRow>(`SELECT ${l.retryColumns} FROM ${l.table} WHERE id = $1 FOR UPDATE`, [
        id,
      ]);
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

/** What an operator narrows the delivery list to; every field is optional. */
export interface DeliveryFilter {
  state?: string;
  partner?: string;
  /** Last changed at or after this instant. */
  since?: Date;
  /** Last changed before this instant. */
  until?: Date;
}

/** The latest deliveries of both kinds, newest first. */
export async function listDeliveries(
  db: Pick<pg.Pool, 'query'>,
  filter: string | DeliveryFilter | undefined,
  limit = 100,
): Promise<DeliverySummary[]> {
  const f: DeliveryFilter = typeof filter === 'string' ? { state: filter } : (filter ?? {});
  const select = (
    l: DeliveryKindSpec,
  ) => `(SELECT id, '${l.kind}' AS kind, exchange_id, partner_id, state, attempts, last_error, updated_at FROM ${l.table}
    WHERE ($1::text IS NULL OR state = $1) AND ($3::text IS NULL OR partner_id = $3)
      AND ($4::timestamptz IS NULL OR updated_at >= $4) AND ($5::timestamptz IS NULL OR updated_at < $5)
    ORDER BY updated_at DESC LIMIT $2)`;
  const { rows } = await db.query<DeliverySummary>(
    `${LEDGERS.map(select).join(' UNION ALL ')} ORDER BY updated_at DESC LIMIT $2`,
    [f.state ?? null, limit, f.partner ?? null, f.since ?? null, f.until ?? null],
  );
  return rows;
}

export interface AttemptSummary {
  attempt: number;
  started_at: Date;
  outcome: string;
  http_status: number | null;
  duration_ms: number;
  error: string | null;
}

/** The attempt history of the given deliveries (either kind), oldest first, by delivery id. */
export async function attemptHistory(
  db: Pick<pg.Pool, 'query'>,
  ids: string[],
): Promise<Map<string, AttemptSummary[]>> {
  const out = new Map<string, AttemptSummary[]>();
  if (ids.length === 0) return out;
  const select = (l: DeliveryKindSpec) =>
    `SELECT delivery_id, attempt, started_at, outcome, http_status, duration_ms, error FROM ${l.attemptsTable} WHERE delivery_id = ANY($1::uuid[])`;
  const { rows } = await db.query<AttemptSummary & { delivery_id: string }>(
    `${LEDGERS.map(select).join(' UNION ALL ')} ORDER BY delivery_id, attempt`,
    [ids],
  );
  for (const { delivery_id, ...a } of rows) out.set(delivery_id, [...(out.get(delivery_id) ?? []), a]);
  return out;
}

import type { Queryable } from '../db/pool.ts';

/**
 * The one place an exchange's state changes are recorded: one row per event
 * in exchange_events, on the caller's transaction, so the event commits with
 * the change it records (and never without it). Rows carry ids and codes
 * only; their id orders them.
 */
export type ExchangeEventKind = 'delivered' | 'processed' | 'response-received' | 'failed' | 'expired';

export interface ExchangeEvent {
  exchangeId: string;
  deliveryId?: string | undefined;
  kind: ExchangeEventKind;
  at: Date;
  /** Ids and codes only (an inbox message id, a response code, a receipt id), never content. */
  detail?: Record<string, string | number | null>;
}

export async function recordExchangeEvent(db: Queryable, e: ExchangeEvent): Promise<void> {
  await db.query(
    'INSERT INTO exchange_events (exchange_id, delivery_id, kind, at, detail) VALUES ($1, $2, $3, $4, $5)',
    [e.exchangeId, e.deliveryId ?? null, e.kind, e.at, JSON.stringify(e.detail ?? {})],
  );
}

export interface RecordedExchangeEvent {
  deliveryId: string | null;
  kind: ExchangeEventKind;
  at: Date;
  detail: Record<string, string | number | null>;
}

/** An exchange's events in the order they were recorded. */
export async function exchangeEvents(db: Queryable, exchangeId: string): Promise<RecordedExchangeEvent[]> {
  const { rows } = await db.query<{
    delivery_id: string | null;
    kind: ExchangeEventKind;
    at: Date;
    detail: Record<string, string | number | null>;
  }>('SELECT delivery_id, kind, at, detail FROM exchange_events WHERE exchange_id = $1 ORDER BY id', [exchangeId]);
  return rows.map((r) => ({ deliveryId: r.delivery_id, kind: r.kind, at: r.at, detail: r.detail }));
}

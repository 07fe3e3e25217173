import type { Queryable } from '../db/pool.ts';
import { jobSpecsSql, NOTIFY_TASK, SAFETY_NET_ATTEMPTS } from '../queue/jobs.ts';

/**
 * The one place an exchange's state changes are recorded: one row per event
 * in exchange_events, on the caller's transaction, so the event commits with
 * the change it records (and never without it). Rows carry ids and codes
 * only; their id orders them. Each event owes a notification to the
 * exchange's response-url, if it has one, and one to each active
 * subscription of its owner whose filter it passes (with that
 * subscription's next event number): written and queued in the same
 * statement, so the event and what tells the sending EHR commit together.
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
    `WITH ev AS (
       INSERT INTO exchange_events (exchange_id, delivery_id, kind, at, detail) VALUES ($4, $5, $6, $7, $8) RETURNING id, exchange_id, kind
     ), owner AS (
       SELECT o.client_id, o.response_url FROM exchange_owners o JOIN ev ON o.id = ev.exchange_id
     ), sub AS (
       -- The next event number of each active subscription of the owner that the event passes the filter of.
       UPDATE subscriptions s SET events_since_start = s.events_since_start + 1
         FROM ev, owner
        WHERE s.client_id = owner.client_id AND s.status = 'active' AND s.deleted_at IS NULL
          AND (s.filter_exchange IS NULL OR s.filter_exchange = ev.exchange_id)
          AND (s.filter_events IS NULL OR ev.kind = ANY (s.filter_events))
       RETURNING s.id, s.endpoint, s.events_since_start
     ), n AS (
       INSERT INTO exchange_notifications (event_id, channel, endpoint, subscription_id, event_number)
       SELECT ev.id, 'response-url', owner.response_url, NULL::uuid, NULL::bigint FROM ev, owner
        WHERE owner.response_url IS NOT NULL
       UNION ALL
       SELECT ev.id, 'rest-hook', sub.endpoint, sub.id, sub.events_since_start FROM ev, sub
       RETURNING id
     )
     SELECT count(*) FROM graphile_worker.add_jobs(${jobSpecsSql(NOTIFY_TASK, '(SELECT id FROM n)')})`,
    [
      NOTIFY_TASK,
      SAFETY_NET_ATTEMPTS,
      null,
      e.exchangeId,
      e.deliveryId ?? null,
      e.kind,
      e.at,
      JSON.stringify(e.detail ?? {}),
    ],
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

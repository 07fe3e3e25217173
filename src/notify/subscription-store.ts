import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { appendAudit } from '../audit/append.ts';
import { inTransaction, type Queryable } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';
import { isUuid } from '../ids.ts';
import type { ExchangeEventKind } from '../outbound/exchange-events.ts';
import { enqueueJobs, NOTIFY_TASK } from '../queue/jobs.ts';
import type { StoredSubscription, SubscriptionRequest, SubscriptionStatus } from './subscription.ts';

interface Row {
  id: string;
  client_id: string;
  status: SubscriptionStatus;
  reason: string;
  endpoint: string;
  payload_content: StoredSubscription['payloadContent'];
  heartbeat_seconds: number | null;
  filter_exchange: string | null;
  filter_events: ExchangeEventKind[] | null;
  events_since_start: string;
  error: string | null;
  version: number;
  updated_at: Date;
}

const stored = (r: Row): StoredSubscription => ({
  id: r.id,
  clientId: r.client_id,
  status: r.status,
  reason: r.reason,
  endpoint: r.endpoint,
  payloadContent: r.payload_content,
  heartbeatSeconds: r.heartbeat_seconds,
  filter: { exchange: r.filter_exchange, events: r.filter_events },
  eventsSinceStart: Number(r.events_since_start),
  error: r.error,
  version: r.version,
  updatedAt: r.updated_at,
});

const notFound = (id: string) => new GatewayError('NOT_FOUND', `no Subscription ${id}`);

/** One of the client's own subscriptions (another client's is not found, as if it did not exist). */
export async function readSubscription(
  db: Queryable,
  id: string,
  clientId: string,
  lock = false,
): Promise<StoredSubscription | undefined> {
  if (!isUuid(id)) return undefined;
  const { rows } = await db.query<Row>(
    `SELECT * FROM subscriptions WHERE id = $1 AND client_id = $2 AND deleted_at IS NULL${lock ? ' FOR UPDATE' : ''}`,
    [id, clientId],
  );
  return rows[0] ? stored(rows[0]) : undefined;
}

/** The client's subscriptions, oldest first, optionally in one status. */
export async function listSubscriptions(
  db: Queryable,
  clientId: string,
  status?: SubscriptionStatus,
): Promise<StoredSubscription[]> {
  const { rows } = await db.query<Row>(
    `SELECT * FROM subscriptions WHERE client_id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR status = $2)
      ORDER BY created_at, id LIMIT 1000`,
    [clientId, status ?? null],
  );
  return rows.map(stored);
}

/** What an audit entry says of a subscription: ids and settings, never the endpoint's path or query. */
function auditDetail(s: SubscriptionRequest) {
  return {
    status: s.status,
    payload: s.payloadContent,
    heartbeat: s.heartbeatSeconds,
    endpoint: new URL(s.endpoint).origin,
    exchange: s.filter.exchange,
    events: s.filter.events?.join(',') ?? null,
  };
}

/** A handshake owed to a subscription that asks to be activated, queued on the caller's transaction. */
async function queueHandshake(db: pg.PoolClient, subscriptionId: string, endpoint: string): Promise<void> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO exchange_notifications (channel, endpoint, subscription_id, type) VALUES ('rest-hook', $1, $2, 'handshake') RETURNING id`,
    [endpoint, subscriptionId],
  );
  await enqueueJobs(
    db,
    NOTIFY_TASK,
    rows.map((r) => r.id),
  );
}

/** Notifications not yet sent to a subscription whose settings changed or that ended: never sent. */
async function cancelPending(db: pg.PoolClient, subscriptionId: string): Promise<void> {
  await db.query(
    `UPDATE exchange_notifications SET state = 'cancelled', next_attempt_at = NULL, updated_at = now()
      WHERE subscription_id = $1 AND state = 'pending'`,
    [subscriptionId],
  );
}

/** Create a subscription (status requested, its handshake queued; or off), audited on the same transaction. */
export async function createSubscription(
  pool: pg.Pool,
  clientId: string,
  s: SubscriptionRequest,
): Promise<StoredSubscription> {
  return inTransaction(pool, async (db) => {
    const { rows } = await db.query<Row>(
      `INSERT INTO subscriptions (id, client_id, status, reason, endpoint, payload_content, heartbeat_seconds, filter_exchange, filter_events)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *`,
      [
        randomUUID(),
        clientId,
        s.status,
        s.reason,
        s.endpoint,
        s.payloadContent,
        s.heartbeatSeconds,
        s.filter.exchange,
        s.filter.events,
      ],
    );
    const row = stored(rows[0] as Row);
    if (s.status === 'requested') await queueHandshake(db, row.id, row.endpoint);
    await appendAudit(db, [
      {
        type: 'subscription.created',
        outcome: 'success',
        agent: { type: 'client', id: clientId },
        entity: [{ type: 'subscription', id: row.id }],
        detail: auditDetail(s),
      },
    ]);
    return row;
  });
}

/**
 * Replace a subscription's settings. Anything not off goes back to
 * requested with a new handshake (the endpoint may be new); what was still
 * pending for it is cancelled. Its event count carries on.
 */
export async function updateSubscription(
  pool: pg.Pool,
  id: string,
  clientId: string,
  s: SubscriptionRequest,
): Promise<StoredSubscription> {
  return inTransaction(pool, async (db) => {
    if (!(await readSubscription(db, id, clientId, true))) throw notFound(id);
    const { rows } = await db.query<Row>(
      `UPDATE subscriptions SET status = $3, reason = $4, endpoint = $5, payload_content = $6, heartbeat_seconds = $7,
              filter_exchange = $8, filter_events = $9, error = NULL, version = version + 1, updated_at = now()
        WHERE id = $1 AND client_id = $2 RETURNING *`,
      [
        id,
        clientId,
        s.status,
        s.reason,
        s.endpoint,
        s.payloadContent,
        s.heartbeatSeconds,
        s.filter.exchange,
        s.filter.events,
      ],
    );
    await cancelPending(db, id);
    if (s.status === 'requested') await queueHandshake(db, id, s.endpoint);
    await appendAudit(db, [
      {
        type: 'subscription.updated',
        outcome: 'success',
        agent: { type: 'client', id: clientId },
        entity: [{ type: 'subscription', id }],
        detail: auditDetail(s),
      },
    ]);
    return stored(rows[0] as Row);
  });
}

/** End a subscription: kept as a tombstone (its notifications reference it), pending notifications cancelled. */
export async function deleteSubscription(pool: pg.Pool, id: string, clientId: string): Promise<void> {
  await inTransaction(pool, async (db) => {
    if (!(await readSubscription(db, id, clientId, true))) throw notFound(id);
    await db.query(
      `UPDATE subscriptions SET status = 'off', deleted_at = now(), version = version + 1, updated_at = now() WHERE id = $1`,
      [id],
    );
    await cancelPending(db, id);
    await appendAudit(db, [
      {
        type: 'subscription.deleted',
        outcome: 'success',
        agent: { type: 'client', id: clientId },
        entity: [{ type: 'subscription', id }],
      },
    ]);
  });
}

/** A refused subscription request, audited: ids and codes only (the refused body is never written). */
export async function auditSubscriptionRefusal(
  pool: pg.Pool,
  refusal: { clientId: string | undefined; code: string; status: number; method: string; remoteAddress: string },
): Promise<void> {
  await inTransaction(pool, (db) =>
    appendAudit(db, [
      {
        type: 'subscription.refused',
        outcome: 'minor-failure',
        agent: {
          type: refusal.clientId ? 'client' : 'anonymous',
          id: refusal.clientId ?? 'unknown',
          network: refusal.remoteAddress,
        },
        detail: { code: refusal.code, status: refusal.status, method: refusal.method },
      },
    ]),
  );
}

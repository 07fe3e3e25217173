import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import { inTransaction, type Queryable } from '../db/pool.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { postOnce, type PostOutcome } from '../net/post-once.ts';
import type { ExchangeEventKind } from '../outbound/exchange-events.ts';
import { NOTIFY_TASK } from '../queue/jobs.ts';
import { notDue, settleAttempt, type RetriedSend, type SettledAttempt } from '../queue/retrying-send.ts';
import { required } from '../required.ts';
import { publicUrls } from '../runtime/public-urls.ts';
import { notificationBundle, type NotificationType } from './subscription-status.ts';
import type { PayloadContent, SubscriptionStatus } from './subscription.ts';
import { responseMessage } from './notice.ts';

export type NotifySendContext = Pick<GatewayContext, 'config' | 'pool' | 'fetch' | 'logger'>;

interface Row {
  id: string;
  channel: 'response-url' | 'rest-hook';
  type: NotificationType;
  endpoint: string;
  state: 'pending' | 'sent' | 'failed' | 'cancelled';
  attempts: number;
  round_started_at: Date;
  next_attempt_at: Date | null;
  event_number: string | null;
  /** The exchange event's (null for a handshake or heartbeat). */
  exchange_id: string | null;
  kind: ExchangeEventKind | null;
  at: Date | null;
  detail: Record<string, string | number | null> | null;
  message_header_id: string | null;
  /** Whose notification it is: the exchange's owner, or the subscription's. */
  client_id: string;
  subscription_id: string | null;
  subscription_status: SubscriptionStatus | null;
  subscription_deleted: boolean | null;
  payload_content: PayloadContent | null;
  events_since_start: string | null;
}

type Result = 'sent' | 'retry' | 'failed' | 'skipped' | 'cancelled';

const NOTIFY_SEND: RetriedSend = { table: 'exchange_notifications', task: NOTIFY_TASK };

const LOAD = `SELECT n.id, n.channel, n.type, n.endpoint, n.state, n.attempts, n.round_started_at, n.next_attempt_at,
                     n.event_number, e.exchange_id, e.kind, e.at, e.detail, x.message_header_id,
                     coalesce(s.client_id, x.client_id) AS client_id, n.subscription_id,
                     s.status AS subscription_status, s.deleted_at IS NOT NULL AS subscription_deleted,
                     s.payload_content, s.events_since_start
                FROM exchange_notifications n
                LEFT JOIN exchange_events e ON e.id = n.event_id
                LEFT JOIN exchange_owners x ON x.id = e.exchange_id
                LEFT JOIN subscriptions s ON s.id = n.subscription_id
               WHERE n.id = $1`;

async function load(db: Queryable, id: string, lock = false): Promise<Row | undefined> {
  const { rows } = await db.query<Row>(lock ? `${LOAD} FOR UPDATE OF n` : LOAD, [id]);
  return rows[0];
}

/**
 * A subscription notification is sent only while the subscription wants it:
 * a handshake while it is requested, anything else while it is active.
 */
function unwanted(row: Row): boolean {
  if (row.channel !== 'rest-hook') return false;
  if (row.subscription_deleted) return true;
  return row.subscription_status !== (row.type === 'handshake' ? 'requested' : 'active');
}

/** What is posted: the id-only response message (response-url), or the backport's notification Bundle. */
function bodyOf(ctx: NotifySendContext, row: Row): Record<string, unknown> {
  const fhirBase = publicUrls(ctx.config.baseUrl).fhir;
  if (row.channel === 'response-url')
    return responseMessage({
      notificationId: row.id,
      exchangeId: required(row.exchange_id ?? undefined, 'the exchange of a response-url notification'),
      kind: required(row.kind ?? undefined, 'the event of a response-url notification'),
      at: required(row.at ?? undefined, 'the time of the event'),
      messageHeaderId: row.message_header_id,
      detail: row.detail ?? {},
      fhirBase,
      org: ctx.config.org,
    }) as Record<string, unknown>;
  const event =
    row.type === 'event-notification'
      ? {
          number: Number(row.event_number),
          at: required(row.at ?? undefined, 'the time of the event'),
          exchangeId: required(row.exchange_id ?? undefined, 'the exchange of the event'),
          kind: required(row.kind ?? undefined, 'the kind of the event'),
        }
      : undefined;
  return notificationBundle(
    {
      id: row.id,
      subscriptionId: required(row.subscription_id ?? undefined, 'the subscription of a rest-hook notification'),
      // A handshake tells the state the subscription is in while it is being activated.
      status: required(row.subscription_status ?? undefined, 'the subscription status'),
      type: row.type,
      // An event carries its own number; a handshake or heartbeat the count so far.
      eventsSinceStart: event ? event.number : Number(row.events_since_start),
      payloadContent: required(row.payload_content ?? undefined, 'the payload content'),
      event,
      fhirBase,
    },
    new Date(),
  ) as unknown as Record<string, unknown>;
}

/**
 * Send one notification: an exchange state change to the response-url the
 * client gave, or a handshake, heartbeat or event to a subscription's
 * rest-hook. The attempt is settled by the one retrying-send step
 * (src/queue/retrying-send.ts, the delivery retry rule); every outcome is
 * audited. A handshake that succeeds activates its subscription; a
 * subscription whose notification is given up goes to error.
 */
export async function sendNotification(ctx: NotifySendContext, id: string): Promise<Result> {
  const row = await load(ctx.pool, id);
  if (!row || notDue(row)) return 'skipped';
  if (unwanted(row)) return inTransaction(ctx.pool, (db) => cancel(db, id));
  const started = Date.now();
  const outcome = await postOnce(ctx.fetch, row.endpoint, {
    contentType: 'application/fhir+json',
    idempotencyKey: row.id,
    body: JSON.stringify(bodyOf(ctx, row)),
    timeoutMs: ctx.config.deliveryTimeout,
  });
  return inTransaction(ctx.pool, (db) => record(ctx, db, id, outcome, started));
}

async function cancel(db: pg.PoolClient, id: string): Promise<Result> {
  await db.query(
    `UPDATE exchange_notifications SET state = 'cancelled', next_attempt_at = NULL, updated_at = now() WHERE id = $1 AND state = 'pending'`,
    [id],
  );
  return 'cancelled';
}

/** The attempt, the new state, its audit entries and the next job on one transaction, under the row lock. */
async function record(
  ctx: NotifySendContext,
  db: pg.PoolClient,
  id: string,
  o: PostOutcome,
  started: number,
): Promise<Result> {
  const row = required(await load(db, id, true), 'the notification the attempt was made for');
  if (row.state !== 'pending') return 'skipped';
  const settled = await settleAttempt(db, NOTIFY_SEND, id, row, o, ctx.config);
  if (row.subscription_id) await settleSubscription(db, row, settled);
  const audit = auditOf(row, settled, o, Date.now() - started);
  if (audit) await appendAudit(db, [audit]);
  ctx.logger.info(
    {
      notification: id,
      exchange: row.exchange_id,
      subscription: row.subscription_id,
      attempt: settled.attempt,
      result: settled.result,
      status: o.status,
    },
    'notification attempt',
  );
  return settled.result;
}

/** What a sent or given-up notification does to its subscription: activated by its handshake, or in error. */
async function settleSubscription(db: pg.PoolClient, row: Row, settled: SettledAttempt): Promise<void> {
  if (settled.result === 'sent')
    await db.query(
      `UPDATE subscriptions SET last_sent_at = now(),
              status = CASE WHEN $2 AND status = 'requested' THEN 'active' ELSE status END,
              version = version + CASE WHEN $2 AND status = 'requested' THEN 1 ELSE 0 END,
              updated_at = CASE WHEN $2 AND status = 'requested' THEN now() ELSE updated_at END
        WHERE id = $1`,
      [row.subscription_id, row.type === 'handshake'],
    );
  else if (settled.result === 'failed')
    await db.query(
      `UPDATE subscriptions SET status = 'error', error = $2, version = version + 1, updated_at = now()
        WHERE id = $1 AND status IN ('requested', 'active') AND deleted_at IS NULL`,
      [row.subscription_id, `${row.type} ${settled.reason}`],
    );
}

function auditOf(row: Row, settled: SettledAttempt, o: PostOutcome, ms: number): AuditInput | undefined {
  if (settled.result === 'retry') return undefined;
  const entity = [
    { type: 'notification', id: row.id },
    ...(row.exchange_id ? [{ type: 'exchange', id: row.exchange_id }] : []),
    ...(row.subscription_id ? [{ type: 'subscription', id: row.subscription_id }] : []),
  ];
  const common = {
    agent: { type: 'client' as const, id: row.client_id },
    entity,
  };
  const what = {
    event: row.kind ?? row.type,
    channel: row.channel,
    ...(row.event_number !== null ? { number: Number(row.event_number) } : {}),
  };
  return settled.result === 'sent'
    ? {
        type: 'notification.sent',
        outcome: 'success',
        ...common,
        detail: { ...what, attempt: settled.attempt, status: o.status, ms },
      }
    : {
        type: 'notification.failed',
        outcome: 'serious-failure',
        ...common,
        detail: { ...what, attempts: settled.attempt, reason: settled.reason, status: o.status, error: o.error },
      };
}

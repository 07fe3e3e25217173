import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import { inTransaction } from '../db/pool.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { giveUpReason, nextAttempt } from '../net/retry-policy.ts';
import { postOnce, type PostOutcome } from '../net/post-once.ts';
import type { ExchangeEventKind } from '../outbound/exchange-events.ts';
import { enqueueJobs, NOTIFY_TASK } from '../queue/jobs.ts';
import { required } from '../required.ts';
import { publicUrls } from '../runtime/public-urls.ts';
import { responseMessage } from './notice.ts';

export type NotifySendContext = Pick<GatewayContext, 'config' | 'pool' | 'fetch' | 'logger'>;

interface Row {
  id: string;
  endpoint: string;
  state: 'pending' | 'sent' | 'failed';
  attempts: number;
  round_started_at: Date;
  next_attempt_at: Date | null;
  exchange_id: string;
  client_id: string;
  kind: ExchangeEventKind;
  at: Date;
  detail: Record<string, string | number | null>;
  message_header_id: string | null;
}

type Outcome = PostOutcome;

const LOAD = `SELECT n.id, n.endpoint, n.state, n.attempts, n.round_started_at, n.next_attempt_at,
                     e.exchange_id, e.kind, e.at, e.detail, x.client_id, x.message_header_id
                FROM exchange_notifications n
                JOIN exchange_events e ON e.id = n.event_id
                JOIN exchanges x ON x.id = e.exchange_id
               WHERE n.id = $1`;

/**
 * Send one notification of an exchange state change to the endpoint the
 * client gave: the id-only response message posted, the attempt recorded
 * with the delivery retry rule (src/net/retry-policy.ts), given up after
 * its budget or horizon, every outcome audited.
 */
export async function sendNotification(
  ctx: NotifySendContext,
  id: string,
): Promise<'sent' | 'retry' | 'failed' | 'skipped'> {
  const { rows } = await ctx.pool.query<Row>(LOAD, [id]);
  const row = rows[0];
  if (!row || row.state !== 'pending') return 'skipped';
  // A job that outlived a crash while a later attempt is already scheduled: leave it to that job.
  if (row.next_attempt_at && row.next_attempt_at.getTime() > Date.now() + 1_000) return 'skipped';
  const body = responseMessage({
    notificationId: row.id,
    exchangeId: row.exchange_id,
    kind: row.kind,
    at: row.at,
    messageHeaderId: row.message_header_id,
    detail: row.detail,
    fhirBase: publicUrls(ctx.config.baseUrl).fhir,
    org: ctx.config.org,
  });
  const started = Date.now();
  const outcome = await post(ctx, row.endpoint, row.id, JSON.stringify(body));
  return inTransaction(ctx.pool, (db) => record(ctx, db, row.id, outcome, started));
}

function post(ctx: NotifySendContext, url: string, id: string, body: string): Promise<Outcome> {
  return postOnce(ctx.fetch, url, {
    contentType: 'application/fhir+json',
    idempotencyKey: id,
    body: body,
    timeoutMs: ctx.config.deliveryTimeout,
  });
}

/** The attempt, the new state, its audit entries and the next job on one transaction, under the row lock. */
async function record(
  ctx: NotifySendContext,
  db: pg.PoolClient,
  id: string,
  o: Outcome,
  started: number,
): Promise<'sent' | 'retry' | 'failed' | 'skipped'> {
  const { rows } = await db.query<Row>(`${LOAD} FOR UPDATE OF n`, [id]);
  const row = required(rows[0], 'the notification the attempt was made for');
  if (row.state !== 'pending') return 'skipped';
  const attempt = row.attempts + 1;
  const agent = { type: 'client' as const, id: row.client_id };
  const entity = [
    { type: 'notification', id },
    { type: 'exchange', id: row.exchange_id },
  ];
  const audit: AuditInput[] = [];
  let result: 'sent' | 'retry' | 'failed';
  if (o.cls === 'ok') {
    result = 'sent';
    await db.query(
      `UPDATE exchange_notifications SET state = 'sent', attempts = $2, sent_at = now(), next_attempt_at = NULL, last_error = NULL, updated_at = now() WHERE id = $1`,
      [id, attempt],
    );
    audit.push({
      type: 'notification.sent',
      outcome: 'success',
      agent,
      entity,
      detail: { event: row.kind, channel: 'response-url', attempt, status: o.status, ms: Date.now() - started },
    });
  } else {
    const next = nextAttempt(attempt, row.round_started_at, ctx.config, o.retryAfterMs);
    if (o.cls === 'permanent' || 'exhausted' in next) {
      result = 'failed';
      await db.query(
        `UPDATE exchange_notifications SET state = 'failed', attempts = $2, last_error = $3, next_attempt_at = NULL, updated_at = now() WHERE id = $1`,
        [id, attempt, o.error],
      );
      audit.push({
        type: 'notification.failed',
        outcome: 'serious-failure',
        agent,
        entity,
        detail: {
          event: row.kind,
          channel: 'response-url',
          attempts: attempt,
          reason: giveUpReason(o.cls, next),
          status: o.status,
          error: o.error,
        },
      });
    } else {
      result = 'retry';
      await db.query(
        `UPDATE exchange_notifications SET attempts = $2, last_error = $3, next_attempt_at = $4, updated_at = now() WHERE id = $1`,
        [id, attempt, o.error, next.at],
      );
      await enqueueJobs(db, NOTIFY_TASK, [id], { runAt: next.at });
    }
  }
  if (audit.length) await appendAudit(db, audit);
  ctx.logger.info(
    { notification: id, exchange: row.exchange_id, attempt, result, status: o.status },
    'notification attempt',
  );
  return result;
}

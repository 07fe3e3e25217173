import type { Queryable } from '../db/pool.ts';
import { jobSpecsSql, NOTIFY_TASK, SAFETY_NET_ATTEMPTS } from '../queue/jobs.ts';

/**
 * Queue a heartbeat for every active subscription that asked for one and
 * has been sent nothing for its period (counted from its last notification,
 * else from its activation), unless something for it is still pending: one
 * statement, rows and jobs together. Returns how many were queued.
 */
export async function queueDueHeartbeats(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `WITH due AS (
       SELECT s.id, s.endpoint FROM subscriptions s
        WHERE s.status = 'active' AND s.deleted_at IS NULL AND s.heartbeat_seconds IS NOT NULL
          AND coalesce(s.last_sent_at, s.updated_at) + make_interval(secs => s.heartbeat_seconds) <= now()
          AND NOT EXISTS (SELECT 1 FROM exchange_notifications p WHERE p.subscription_id = s.id AND p.state = 'pending')
     ), n AS (
       INSERT INTO exchange_notifications (channel, endpoint, subscription_id, type)
       SELECT 'rest-hook', due.endpoint, due.id, 'heartbeat' FROM due
       RETURNING id
     )
     SELECT coalesce(array_length(array_agg(j.id), 1), 0)::int AS n
       FROM graphile_worker.add_jobs(${jobSpecsSql(NOTIFY_TASK, '(SELECT id FROM n)')}) AS j`,
    [NOTIFY_TASK, SAFETY_NET_ATTEMPTS, null],
  );
  return rows[0]?.n ?? 0;
}

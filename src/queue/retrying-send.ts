import type { Queryable } from '../db/pool.ts';
import type { PostOutcome } from '../net/post-once.ts';
import { giveUpReason, nextAttempt, type RetryBounds } from '../net/retry-policy.ts';
import { enqueueJobs, type IdJobTask } from './jobs.ts';

/** The columns every retried send keeps on its row. */
export interface RetriedRow {
  state: string;
  attempts: number;
  round_started_at: Date;
  next_attempt_at: Date | null;
}

/** Where a kind of retried send keeps its rows, and the job that sends one. */
export interface RetriedSend {
  table: 'processed_receipts' | 'exchange_notifications';
  task: IdJobTask;
}

export type SettledAttempt =
  | { result: 'sent'; attempt: number }
  | { result: 'retry'; attempt: number; at: Date }
  | { result: 'failed'; attempt: number; reason: ReturnType<typeof giveUpReason> };

/**
 * Nothing to send: the row is settled, or this job outlived a crash while a
 * later attempt is already scheduled (that attempt's job sends it).
 */
export function notDue(row: RetriedRow | undefined, now = Date.now()): boolean {
  if (!row || row.state !== 'pending') return true;
  return row.next_attempt_at !== null && row.next_attempt_at.getTime() > now + 1_000;
}

/**
 * The one retrying-send step of processed receipts and notifications: one
 * attempt's outcome recorded on its row (read under the caller's row lock)
 * with the delivery retry rule (src/net/retry-policy.ts): sent, given up
 * (refused for good, or out of attempts or time), or the next attempt
 * scheduled and its job queued, on the caller's transaction. What is
 * audited stays with the caller.
 */
export async function settleAttempt(
  db: Queryable,
  kind: RetriedSend,
  id: string,
  row: RetriedRow,
  o: PostOutcome,
  bounds: RetryBounds,
): Promise<SettledAttempt> {
  const attempt = row.attempts + 1;
  if (o.cls === 'ok') {
    await db.query(
      `UPDATE ${kind.table} SET state = 'sent', attempts = $2, sent_at = now(), next_attempt_at = NULL, last_error = NULL, updated_at = now() WHERE id = $1`,
      [id, attempt],
    );
    return { result: 'sent', attempt };
  }
  const next = nextAttempt(attempt, row.round_started_at, bounds, o.retryAfterMs);
  if (o.cls === 'permanent' || 'exhausted' in next) {
    await db.query(
      `UPDATE ${kind.table} SET state = 'failed', attempts = $2, last_error = $3, next_attempt_at = NULL, updated_at = now() WHERE id = $1`,
      [id, attempt, o.error],
    );
    return { result: 'failed', attempt, reason: giveUpReason(o.cls, next) };
  }
  await db.query(
    `UPDATE ${kind.table} SET attempts = $2, last_error = $3, next_attempt_at = $4, updated_at = now() WHERE id = $1`,
    [id, attempt, o.error, next.at],
  );
  await enqueueJobs(db, kind.task, [id], { runAt: next.at });
  return { result: 'retry', attempt, at: next.at };
}

import type { Queryable } from '../db/pool.ts';

/**
 * Per-account sign-in backoff and lockout for the audit page, in PostgreSQL
 * so that every API process agrees. Keyed by the name as typed, existing or
 * not, so a locked or slowed name looks the same whether or not it exists.
 */
export const LOGIN_POLICY = {
  /** Consecutive failures before the next attempt has to wait. */
  freeFailures: 3,
  /** The first wait; it doubles with each further failure. */
  firstDelaySeconds: 1,
  /** At this many consecutive failures the account is locked until an administrator unlocks it. */
  lockAfter: 10,
  /** A run of failures that is not locked is forgotten after this long without another. */
  forgetAfterHours: 24,
} as const;

/** Seconds to wait after `failures` consecutive failures before the next attempt. */
export function backoffSeconds(failures: number): number {
  const beyond = failures - LOGIN_POLICY.freeFailures;
  return beyond < 0 ? 0 : LOGIN_POLICY.firstDelaySeconds * 2 ** beyond;
}

export type LoginGate =
  /** The attempt is counted as attempt number `failures` of the run; clear it on success. */
  { kind: 'attempt'; failures: number } | { kind: 'wait'; retryAfter: number } | { kind: 'locked'; failures: number };

// When the next attempt is due: the last failure plus backoffSeconds(failures), in SQL ($3, $4: the policy).
const DUE_AT = `f.last_failure_at + make_interval(secs => CASE WHEN f.failures < $3 THEN 0 ELSE $4 * power(2, f.failures - $3) END)`;

/**
 * Count one sign-in attempt for `name` before its password is checked, in
 * one statement: the row lock makes concurrent attempts (from any process)
 * take turns, so no more than `lockAfter` passwords are ever tried in a run.
 * Refused without counting while the account waits out its backoff or is locked.
 */
export async function claimLoginAttempt(db: Queryable, name: string): Promise<LoginGate> {
  const { lockAfter, freeFailures, firstDelaySeconds, forgetAfterHours } = LOGIN_POLICY;
  await db.query(
    `DELETE FROM audit_login_failures WHERE failures < $1 AND last_failure_at < now() - make_interval(hours => $2)`,
    [lockAfter, forgetAfterHours],
  );
  const claimed = await db.query<{ failures: number }>(
    `INSERT INTO audit_login_failures AS f (name, failures, last_failure_at) VALUES ($1, 1, now())
     ON CONFLICT (name) DO UPDATE SET failures = f.failures + 1, last_failure_at = now()
     WHERE f.failures < $2 AND now() >= ${DUE_AT}
     RETURNING failures`,
    [name, lockAfter, freeFailures, firstDelaySeconds],
  );
  const row = claimed.rows[0];
  if (row) return { kind: 'attempt', failures: row.failures };
  const { rows } = await db.query<{ failures: number; locked: boolean; wait: number }>(
    `SELECT f.failures, f.failures >= $2 AS locked, ceil(extract(epoch FROM ${DUE_AT} - now()))::int AS wait
     FROM audit_login_failures f WHERE f.name = $1`,
    [name, lockAfter, freeFailures, firstDelaySeconds],
  );
  const state = rows[0];
  // The row vanished in between (an unlock, a success): refuse this once rather than try a password uncounted.
  if (!state) return { kind: 'wait', retryAfter: 1 };
  if (state.locked) return { kind: 'locked', failures: state.failures };
  return { kind: 'wait', retryAfter: Math.max(1, state.wait) };
}

/** A correct password ends the run of failures. */
export async function clearLoginFailures(db: Queryable, name: string): Promise<void> {
  await db.query('DELETE FROM audit_login_failures WHERE name = $1', [name]);
}

/** An administrator's unlock: forget the name's failures. Returns how many there were (0: nothing to unlock). */
export async function unlockLogin(db: Queryable, name: string): Promise<number> {
  const { rows } = await db.query<{ failures: number }>(
    'DELETE FROM audit_login_failures WHERE name = $1 RETURNING failures',
    [name],
  );
  return rows[0]?.failures ?? 0;
}

/** Names locked out now, for `gateway audit users list`. */
export async function lockedNames(db: Queryable): Promise<Set<string>> {
  const { rows } = await db.query<{ name: string }>('SELECT name FROM audit_login_failures WHERE failures >= $1', [
    LOGIN_POLICY.lockAfter,
  ]);
  return new Set(rows.map((r) => r.name));
}

/** Whether `name` is locked out now (a passkey sign-in, which guesses nothing, still honours the lockout). */
export async function isLoginLocked(db: Queryable, name: string): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM audit_login_failures WHERE name = $1 AND failures >= $2', [
    name,
    LOGIN_POLICY.lockAfter,
  ]);
  return rows.length > 0;
}

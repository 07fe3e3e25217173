/**
 * Whether an error means "the database cannot be reached right now" (as
 * opposed to "this query is wrong"): the server is down, restarting,
 * shutting down or recovering from a crash, or the connection to it broke.
 * Such a failure is the gateway's, transient, and nothing was committed by
 * the statement that met it; callers answer 503 and retry later.
 */

/** Socket errors from connecting to, or talking with, the server. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENOTCONN',
  'EAI_AGAIN',
]);

/** SQLSTATEs of an unavailable server; class 08 (connection exception) is matched as a class. */
const SQLSTATES = new Set([
  '57P01', // admin_shutdown: the server is stopping and ended this session
  '57P02', // crash_shutdown: another backend crashed, every session is ended
  '57P03', // cannot_connect_now: starting up, in recovery, or shutting down
]);

/** node-postgres and pg-pool errors that carry no code, only these messages. */
const CLIENT_MESSAGES = [
  /^Connection terminated/, // "... unexpectedly", "... due to connection timeout", or while a query waited
  /^timeout exceeded when trying to connect$/, // the pool's connectionTimeoutMillis
  /is not queryable$/, // a client that already met a connection error, or was closed by one
];

function matchesItself(err: object): boolean {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (SOCKET_CODES.has(code) || SQLSTATES.has(code)) return true;
    // A Unix-socket connect whose socket file is gone while the server is down (not a missing file on disk).
    if (code === 'ENOENT' && (err as { syscall?: unknown }).syscall === 'connect') return true;
    if (/^08[0-9A-Z]{3}$/.test(code)) return true;
  }
  const message = (err as { message?: unknown }).message;
  return typeof message === 'string' && CLIENT_MESSAGES.some((m) => m.test(message));
}

/**
 * True for a database-unavailable error: the error itself, or every member of
 * an AggregateError (a connect to a host with several addresses fails with
 * one error per address). A `cause` is not followed: a failed HTTP fetch
 * carries ECONNREFUSED there too, and that is a peer's outage, not ours.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  if (matchesItself(err)) return true;
  const errors = (err as { errors?: unknown }).errors;
  return (
    Array.isArray(errors) && errors.length > 0 && errors.every((e) => !!e && typeof e === 'object' && matchesItself(e))
  );
}

/** Seconds a client is told to wait before retrying while the database is unavailable. */
export const DATABASE_RETRY_AFTER_S = 5;

import pg from 'pg';
import { CONNECT_TIMEOUT_MS, failoverClient, parseMultiHostUrl, PrimarySelector } from './primary.ts';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** Anything that runs a query: the pool, or a client inside a transaction. */
export type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

export interface PoolLogger {
  warn: (obj: object, msg: string) => void;
}

/**
 * A pg pool that survives the database going away: an idle client's error
 * would otherwise be an unhandled 'error' event and crash the process. A
 * multi-host URL (primary.ts) gets a pool whose connections go to whichever
 * listed host is the read-write primary. Its group commits write on a
 * companion pool of their own (commitPool).
 */
export function createPool(connectionString: string, logger: PoolLogger, max = 20): pg.Pool {
  const pool = buildPool(connectionString, logger, { max });
  commitPools.set(pool, buildPool(connectionString, logger, { max: COMMIT_CONNECTIONS, options: GENERIC_PLANS }));
  return pool;
}

/** Enough for every group-commit writer of a process to have its batches in flight. */
const COMMIT_CONNECTIONS = 4;

/** The server plans every statement of such a connection once per statement, never per value. */
const GENERIC_PLANS = '-c plan_cache_mode=force_generic_plan';

const commitPools = new WeakMap<pg.Pool, pg.Pool>();

/**
 * The connections group commits write on: their named batch statements are
 * planned generically. A batch's parameters are arrays of whole envelopes,
 * and a custom plan (the server's choice for small batches) plans the
 * statement anew with every value copied into it, which costs more than the
 * write itself. Other queries stay on the main pool, where a plan may depend
 * on the values. A pool not made by createPool is its own.
 */
export function commitPool(pool: pg.Pool): pg.Pool {
  return commitPools.get(pool) ?? pool;
}

function buildPool(connectionString: string, logger: PoolLogger, extra: { max: number; options?: string }): pg.Pool {
  const options = { ...extra, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, idleTimeoutMillis: 30_000 };
  const multi = parseMultiHostUrl(connectionString);
  const pool = multi
    ? new pg.Pool({
        ...options,
        connectionString: multi.urlFor(multi.hosts[0]),
        Client: failoverClient(new PrimarySelector(multi), multi),
      })
    : new pg.Pool({ ...options, connectionString });
  const open = new Set<Promise<void>>();
  openConnections.set(pool, open);
  pool.on('error', (err) =>
    logger.warn(
      { err: { message: err.message, code: (err as { code?: string }).code } },
      'idle database client failed',
    ),
  );
  pool.on('connect', (client) => {
    client.on('error', (err) => logger.warn({ err: { message: err.message } }, 'database client failed'));
    const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
    open.add(ended);
    void ended.then(() => open.delete(ended));
  });
  return pool;
}

/** Each pool's connections whose socket is still open (resolved when it closes). */
const openConnections = new WeakMap<pg.Pool, Set<Promise<void>>>();

/**
 * End the pool and wait until every connection's socket has closed. pg's
 * pool.end() resolves once its clients are asked to end, before the server
 * has let them go; a server stopped in that window terminates each one
 * (57P01), which the handlers above would log as a warning per connection.
 */
export async function endPool(pool: pg.Pool, timeoutMs = 5_000): Promise<void> {
  const commit = commitPools.get(pool);
  if (commit) await endPool(commit, timeoutMs);
  await pool.end();
  const open = [...(openConnections.get(pool) ?? [])];
  if (open.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(open),
    new Promise((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
}

/** Run fn in a transaction on a connection of its own; roll back on any error. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await withinTransaction(client, fn);
  } finally {
    client.release();
  }
}

/**
 * Run fn in a transaction on a connection the caller already holds (one that
 * keeps a session-level advisory lock across several transactions); roll back
 * on any error and rethrow it, not a failure of the rollback itself.
 */
export async function withinTransaction<C extends pg.ClientBase, T>(
  client: C,
  fn: (client: C) => Promise<T>,
): Promise<T> {
  await client.query('BEGIN');
  try {
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

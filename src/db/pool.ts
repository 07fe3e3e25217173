import pg from 'pg';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export interface PoolLogger {
  warn: (obj: object, msg: string) => void;
}

/**
 * A pg pool that survives the database going away: an idle client's error
 * would otherwise be an unhandled 'error' event and crash the process.
 */
export function createPool(connectionString: string, logger: PoolLogger, max = 20): pg.Pool {
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: 5_000, idleTimeoutMillis: 30_000 });
  pool.on('error', (err) =>
    logger.warn(
      { err: { message: err.message, code: (err as { code?: string }).code } },
      'idle database client failed',
    ),
  );
  pool.on('connect', (client) => {
    client.on('error', (err) => logger.warn({ err: { message: err.message } }, 'database client failed'));
  });
  return pool;
}

/** Run fn in a transaction; roll back on any error. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

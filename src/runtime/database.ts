import type pg from 'pg';
import type { Config } from '../config.ts';
import { createPool, endPool, type PoolLogger } from '../db/pool.ts';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../db/embedded.ts';
import { migrate } from '../db/migrate.ts';
import { supervisePostgres, type Supervisor } from '../db/supervisor.ts';
import { isDatabaseUnavailable } from '../db/unavailable.ts';

export interface Database {
  pool: pg.Pool;
  url: string;
  close(): Promise<void>;
}

export interface DatabaseLogger extends PoolLogger {
  info: (obj: object, msg: string) => void;
}

/**
 * DATABASE_URL if set, otherwise embedded PostgreSQL in DATA_DIR, restarted
 * if its postmaster dies (a server another process started is that
 * process's to supervise); then migrations.
 */
export async function openDatabase(
  config: Config,
  logger: DatabaseLogger,
  options: { migrate?: boolean; max?: number } = {},
): Promise<Database> {
  let embedded: EmbeddedDatabase | undefined;
  let supervisor: Supervisor | undefined;
  let url = config.databaseUrl;
  if (!url) {
    embedded = await startEmbeddedPostgres(config.dataDir, {
      port: config.embeddedPgPort,
      profile: config.embeddedPgProfile,
      log: (msg) => logger.info({ postgres: msg }, 'embedded postgres'),
    });
    url = embedded.url;
    if (embedded.control) supervisor = supervisePostgres(embedded.control, logger);
    logger.info({ startedHere: embedded.startedHere, listen: embedded.endpoint }, 'embedded PostgreSQL ready');
  }
  const pool = createPool(url, logger, options.max);
  try {
    if (options.migrate !== false) {
      const { applied } = await migrateWhenReachable(pool, logger, config.databaseStartWait);
      if (applied.length) logger.info({ applied }, 'database migrated');
    }
  } catch (err) {
    await endPool(pool).catch(() => undefined);
    await supervisor?.stop();
    await embedded?.stop().catch(() => undefined);
    throw err;
  }
  return {
    pool,
    url,
    close: async () => {
      await endPool(pool).catch(() => undefined);
      await supervisor?.stop(); // before the server: its stop is no crash to recover from
      await embedded?.stop();
    },
  };
}

/**
 * Migrate once the database answers: a process started beside a server that
 * is still starting, restarting or being failed over waits for it (up to
 * DATABASE_START_WAIT) rather than exiting at once. Any other error stops it.
 */
async function migrateWhenReachable(pool: pg.Pool, logger: DatabaseLogger, waitMs: number): ReturnType<typeof migrate> {
  const deadline = Date.now() + waitMs;
  for (let delay = 250; ; delay = Math.min(delay * 2, 5_000)) {
    try {
      return await migrate(pool);
    } catch (err) {
      if (!isDatabaseUnavailable(err) || Date.now() + delay > deadline) throw err;
      logger.warn(
        { err: { message: (err as Error).message }, retryInMs: delay },
        'database not reachable yet; waiting',
      );
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

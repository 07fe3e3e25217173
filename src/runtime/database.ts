import type pg from 'pg';
import type { Config } from '../config.ts';
import { createPool, endPool, type PoolLogger } from '../db/pool.ts';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../db/embedded.ts';
import { migrate } from '../db/migrate.ts';
import { supervisePostgres, type Supervisor } from '../db/supervisor.ts';

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
      const { applied } = await migrate(pool);
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

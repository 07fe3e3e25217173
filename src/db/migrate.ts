import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { Logger, runMigrations } from 'graphile-worker';
import { withinTransaction } from './pool.ts';

const MIGRATIONS_DIR = join(import.meta.dirname, 'migrations');
// Any fixed number; serialises concurrent migrators (several serve/worker processes starting at once).
const MIGRATION_LOCK = 7_273_001;

export interface MigrationResult {
  applied: string[];
}

/** Apply our SQL migrations in file-name order, then graphile-worker's own. Idempotent. */
export async function migrate(pool: pg.Pool): Promise<MigrationResult> {
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const done = new Set(
      (await client.query<{ name: string }>('SELECT name FROM schema_migrations')).rows.map((r) => r.name),
    );
    const files = readdirSync(MIGRATIONS_DIR)
      .filter((f) => f.endsWith('.sql'))
      .sort();
    for (const file of files) {
      if (done.has(file)) continue;
      const sql = readFileSync(join(MIGRATIONS_DIR, file), 'utf8');
      try {
        await withinTransaction(client, async (db) => {
          await db.query(sql);
          await db.query('INSERT INTO schema_migrations (name) VALUES ($1)', [file]);
        });
        applied.push(file);
      } catch (err) {
        throw new Error(`migration ${file} failed: ${(err as Error).message}`, { cause: err });
      }
    }
    await runMigrations({ pgPool: pool, logger: silentLogger() });
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    client.release();
  }
  return { applied };
}

export function silentLogger(): Logger {
  return new Logger(() => () => undefined);
}

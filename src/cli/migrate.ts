import { loadConfig } from '../config.ts';
import { openDatabase } from '../runtime/database.ts';
import { parse, print, type Command } from './command.ts';
import { cliLogger } from './logger.ts';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'apply database migrations and exit',
  usage: `gateway migrate

Applies the gateway's and graphile-worker's database migrations to DATABASE_URL
(or the embedded PostgreSQL in DATA_DIR), then exits. Safe to run repeatedly and
from several processes at once.`,
  async run(args) {
    parse(args, {});
    const config = loadConfig();
    const db = await openDatabase(config, cliLogger(config), { migrate: false });
    try {
      const { migrate } = await import('../db/migrate.ts');
      const { applied } = await migrate(db.pool);
      print(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
      return 0;
    } finally {
      await db.close();
    }
  },
};

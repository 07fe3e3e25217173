import { loadConfig } from '../config.ts';
import { openDatabase } from '../runtime/database.ts';
import { listKeys } from '../keys/store.ts';
import { UsageError, parse, print, table, type Command } from './command.ts';
import { cliLogger } from './logger.ts';

const iso = (d: Date | null) => (d ? d.toISOString() : '');

export const keysCommand: Command = {
  name: 'keys',
  summary: 'show the gateway key inventory',
  usage: `gateway keys list [--json]

Shows every key the gateway has held: kid (RFC 7638 thumbprint), use
(sig, enc, audit), alg, state and the time of each lifecycle step.
Private keys live in the HSM; this reads the inventory from the database, so it
works from a second shell while the gateway runs (same DATA_DIR or DATABASE_URL).`,
  async run(args) {
    const { values, positionals } = parse(args, { json: { type: 'boolean' } }, true);
    if (positionals[0] !== 'list') throw new UsageError(`unknown keys subcommand ${positionals[0] ?? '(none)'}; try: gateway keys list`);
    const config = loadConfig();
    const db = await openDatabase(config, cliLogger(config));
    try {
      const keys = await listKeys(db.pool);
      if (values.json) print(JSON.stringify(keys, null, 2));
      else
        print(
          table(
            keys.map((k) => ({ kid: k.kid, use: k.use, alg: k.alg, state: k.state, created: iso(k.created_at), activated: iso(k.activated_at), deactivated: iso(k.deactivated_at), destroyed: iso(k.destroyed_at) })),
            ['kid', 'use', 'alg', 'state', 'created', 'activated', 'deactivated', 'destroyed'],
          ),
        );
      return 0;
    } finally {
      await db.close();
    }
  },
};

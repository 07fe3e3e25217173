import { loadConfig } from '../config.ts';
import { openDatabase } from '../runtime/database.ts';
import { listHolds, placeHold, releaseHold } from '../retention/hold.ts';
import { UsageError, cliOperator, parse, print, table, type Command } from './command.ts';
import { cliLogger } from './logger.ts';

export const retentionCommand: Command = {
  name: 'retention',
  summary: 'legal holds: keep an exchange whatever RETENTION_* says',
  usage: `gateway retention hold EXCHANGE_ID
gateway retention release EXCHANGE_ID
gateway retention list

hold keeps every delivery and inbox message of the exchange (on a sending
gateway our exchange id, on a receiving one the sender's, as GET
/inbox/messages shows it) from retention until it is released; content
already purged stays purged. Both are audited (retention.held,
retention.released). Works while the gateway runs (same DATABASE_URL or DATA_DIR).`,
  async run(args) {
    const { positionals } = parse(args, {}, true);
    const [sub, id] = positionals;
    if (sub !== 'hold' && sub !== 'release' && sub !== 'list')
      throw new UsageError(`unknown retention subcommand ${sub ?? '(none)'}`);
    if (sub !== 'list' && !id) throw new UsageError(`${sub} needs the exchange id`);
    const config = loadConfig();
    const db = await openDatabase(config, cliLogger(config));
    try {
      const ctx = { pool: db.pool };
      if (sub !== 'list' && id) {
        const changed = await (sub === 'hold' ? placeHold : releaseHold)(ctx, id, cliOperator().id);
        const said = { hold: ['held', 'was held'], release: ['released', 'was not held'] }[sub];
        print(`exchange ${id} ${changed ? said[0] : said[1]}`);
      } else
        print(
          table(
            (await listHolds(ctx)).map((h) => ({
              exchange: h.exchangeId,
              by: h.heldBy,
              since: h.heldAt.toISOString(),
            })),
            ['exchange', 'by', 'since'],
          ),
        );
      return 0;
    } finally {
      await db.close();
    }
  },
};

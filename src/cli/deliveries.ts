import { loadConfig } from '../config.ts';
import { openDatabase } from '../runtime/database.ts';
import { listDeliveries, retryDelivery } from '../outbound/delivery-admin.ts';
import { cliOperator, type Command, parse, print, table, UsageError } from './command.ts';
import { cliLogger } from './logger.ts';

export const deliveriesCommand: Command = {
  name: 'deliveries',
  summary: 'list deliveries (bundle and imaging) and retry failed ones',
  usage: `gateway deliveries list [--state pending|delivered|failed] [--json]
gateway deliveries retry ID

list shows the latest deliveries of both kinds (bundle, imaging), newest
first, with their state, attempt count and last error (status codes only,
never content).
retry re-queues a failed delivery of either kind: the same sealed envelope
(for imaging, the stored sealed content file) and delivery id, with a fresh
attempt budget (DELIVERY_MAX_ATTEMPTS) and horizon (DELIVERY_HORIZON).
A delivery that is not failed, or whose sealed content file is gone, is refused.
Works from a second shell while the gateway runs (same DATABASE_URL or DATA_DIR).`,
  async run(args) {
    const { values, positionals } = parse(args, { state: { type: 'string' }, json: { type: 'boolean' } }, true);
    const sub = positionals[0];
    if (sub !== 'list' && sub !== 'retry') throw new UsageError(`unknown deliveries subcommand ${sub ?? '(none)'}`);
    const retryId = sub === 'retry' ? positionals[1] : undefined;
    if (sub === 'retry' && !retryId) throw new UsageError('retry needs the delivery id');
    if (values.state !== undefined && !['pending', 'delivered', 'failed'].includes(values.state))
      throw new UsageError('--state must be pending, delivered or failed');
    const config = loadConfig();
    const db = await openDatabase(config, cliLogger(config));
    try {
      if (retryId) {
        const kind = await retryDelivery({ pool: db.pool }, retryId, cliOperator());
        print(`${kind} delivery ${retryId} queued for another attempt`);
      } else {
        const rows = await listDeliveries(db.pool, values.state);
        if (values.json) print(JSON.stringify(rows, null, 2));
        else
          print(
            table(
              rows.map((r) => ({
                id: r.id,
                exchange: r.exchange_id,
                partner: r.partner_id,
                state: r.state,
                kind: r.kind,
                attempts: String(r.attempts),
                'last error': r.last_error ?? '',
                updated: r.updated_at.toISOString(),
              })),
              ['id', 'exchange', 'partner', 'state', 'kind', 'attempts', 'last error', 'updated'],
            ),
          );
      }
      return 0;
    } finally {
      await db.close();
    }
  },
};

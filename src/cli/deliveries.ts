import { loadConfig } from '../config.ts';
import { openDatabase } from '../runtime/database.ts';
import { listDeliveries, retryDelivery } from '../outbound/delivery-admin.ts';
import { decideDowngrade } from '../outbound/partner-suspension.ts';
import { cliOperator, type Command, parse, print, table, UsageError } from './command.ts';
import { cliLogger } from './logger.ts';

export const deliveriesCommand: Command = {
  name: 'deliveries',
  summary: 'list deliveries (bundle and imaging), retry failed ones, decide about a post-quantum downgrade',
  usage: `gateway deliveries list [--state pending|delivered|failed] [--json]
gateway deliveries retry ID
gateway deliveries downgrade PARTNER allow-v1|hold

list shows the latest deliveries of both kinds (bundle, imaging), newest
first, with their state, attempt count and last error (status codes only,
never content).
retry re-queues a failed delivery of either kind: the same sealed envelope
(for imaging, the stored sealed content file) and delivery id, with a fresh
attempt budget (DELIVERY_MAX_ATTEMPTS) and horizon (DELIVERY_HORIZON).
A delivery that is not failed, or whose sealed content file is gone, is refused.
downgrade decides about a partner that no longer publishes the post-quantum
keys it published before (PQ_DOWNGRADE=hold keeps its deliveries waiting,
pending): allow-v1 sends the waiting deliveries as v1 (sealed to its
classical keys, the only ones it publishes) and the next ones too, until its
post-quantum keys return; hold keeps them waiting. Audited as
partner.downgrade-decided with who decided.
Works from a second shell while the gateway runs (same DATABASE_URL or DATA_DIR).`,
  async run(args) {
    const { values, positionals } = parse(args, { state: { type: 'string' }, json: { type: 'boolean' } }, true);
    const sub = positionals[0];
    if (sub !== 'list' && sub !== 'retry' && sub !== 'downgrade')
      throw new UsageError(`unknown deliveries subcommand ${sub ?? '(none)'}`);
    const downgrade = sub === 'downgrade' ? downgradeArgs(positionals.slice(1)) : undefined;
    const retryId = sub === 'retry' ? positionals[1] : undefined;
    if (sub === 'retry' && !retryId) throw new UsageError('retry needs the delivery id');
    if (values.state !== undefined && !['pending', 'delivered', 'failed'].includes(values.state))
      throw new UsageError('--state must be pending, delivered or failed');
    const config = loadConfig();
    const db = await openDatabase(config, cliLogger(config));
    try {
      if (downgrade) {
        const requeued = await decideDowngrade(db.pool, downgrade.partner, downgrade.decision, cliOperator());
        print(
          downgrade.decision === 'allow-v1'
            ? `partner ${downgrade.partner}: deliveries go as v1 until its post-quantum keys return; ${requeued} waiting queued again`
            : `partner ${downgrade.partner}: v1 deliveries wait for a decision`,
        );
      } else if (retryId) {
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

function downgradeArgs(args: string[]): { partner: string; decision: 'allow-v1' | 'hold' } {
  const [partner, decision, ...rest] = args;
  if (!partner || (decision !== 'allow-v1' && decision !== 'hold') || rest.length)
    throw new UsageError('downgrade needs the partner id and allow-v1 or hold');
  return { partner, decision };
}

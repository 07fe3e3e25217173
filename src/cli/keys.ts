import { loadConfig } from '../config.ts';
import { openDatabase } from '../runtime/database.ts';
import { keyHistory } from '../keys/history.ts';
import { KEY_USES, type KeyUse } from '../keys/store.ts';
import { KEYS_ROTATE_TASK, type RotatePayload } from '../worker/tasks/keys.ts';
import { UsageError, cliOperator, parse, print, table, type Command } from './command.ts';
import { cliLogger } from './logger.ts';
import { required } from '../required.ts';

const POLL_MS = 250;

/**
 * Rotation by hand goes through the job queue: the CLI needs the database
 * only, and the HSM step runs in the worker that already holds the token
 * (one place opens the HSM; a network HSM may allow one client only). The CLI
 * waits for the job's outcome; a job no worker picked up is withdrawn, so a
 * rotation never happens by surprise later.
 */
async function rotate(pool: import('pg').Pool, uses: KeyUse[], now: boolean, timeoutMs: number): Promise<number> {
  const requestedBy = cliOperator().id;
  for (const use of uses) {
    const payload: RotatePayload = { use, now, requestedBy };
    const jobKey = `keys_rotate_manual_${use}_${Date.now()}`;
    const { rows } = await pool.query<{ id: string }>(
      `SELECT id FROM graphile_worker.add_job($1, $2::json, max_attempts := 1, job_key := $3)`,
      [KEYS_ROTATE_TASK, JSON.stringify(payload), jobKey],
    );
    const { id } = required(rows[0], 'add_job to return the job');
    const until = Date.now() + timeoutMs;
    for (;;) {
      const { rows: job } = await pool.query<{
        attempts: number;
        max_attempts: number;
        last_error: string | null;
        locked_at: Date | null;
      }>('SELECT attempts, max_attempts, last_error, locked_at FROM graphile_worker.jobs WHERE id = $1', [id]);
      const [j] = job;
      if (!j) break; // graphile-worker deletes a job once it succeeded
      if (j.attempts >= j.max_attempts && !j.locked_at) {
        await pool.query('SELECT graphile_worker.remove_job($1)', [jobKey]);
        process.stderr.write(
          `gateway keys rotate: the ${use} rotation failed: ${(j.last_error ?? 'unknown error').split('\n')[0]}\n`,
        );
        return 1;
      }
      if (Date.now() > until) {
        if (j.attempts === 0) {
          await pool.query('SELECT graphile_worker.remove_job($1)', [jobKey]);
          process.stderr.write(
            `gateway keys rotate: no worker ran the ${use} rotation within ${timeoutMs / 1000} s; is \`gateway start\` or \`gateway worker\` running? Nothing was changed.\n`,
          );
        } else
          process.stderr.write(
            `gateway keys rotate: the ${use} rotation is still running; see \`gateway keys list\`.\n`,
          );
        return 1;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    print(`${use}: rotated${now ? ' (new key active now)' : ' (new key published; activated after KEY_PREPUBLISH)'}`);
  }
  return 0;
}

export const keysCommand: Command = {
  name: 'keys',
  summary: 'show the gateway key inventory and history; rotate keys by hand',
  usage: `gateway keys list [--json]
gateway keys rotate [--use sig|enc|audit|blinding|pq-sig|pq-enc] [--now] [--timeout SECONDS]

list: every key the gateway has held, in every state: kid (RFC 7638
thumbprint; for the blinding HMAC key, its check value), use (sig, enc,
audit, blinding, and pq-sig/pq-enc: the ML-DSA-65 and ML-KEM-768 keys of
protocol v2), alg, state (pre-activation, active,
deactivated, destroyed) and the time of each lifecycle step. Reads the
database only, so it works from a second shell while the gateway runs.

rotate: asks the running worker (gateway start or gateway worker) to rotate
the key of one use (default: sig, enc, pq-sig and pq-enc) and waits for the result. Without
--now a new key is generated and published, and activated KEY_PREPUBLISH
later by the schedule. With --now it is published and activated at once:
use it after a suspected compromise; peers holding a cached copy of our JWKS
fetch it again on the unknown kid, but may seal to the old key until their
cache expires (we keep decrypting with it until it is destroyed).`,
  async run(args) {
    const { values, positionals } = parse(
      args,
      { json: { type: 'boolean' }, use: { type: 'string' }, now: { type: 'boolean' }, timeout: { type: 'string' } },
      true,
    );
    const sub = positionals[0];
    if (sub !== 'list' && sub !== 'rotate')
      throw new UsageError(`unknown keys subcommand ${sub ?? '(none)'}; try: gateway keys list`);
    if (values.use !== undefined && !KEY_USES.includes(values.use as KeyUse))
      throw new UsageError(`--use must be one of ${KEY_USES.join(', ')}`);
    const timeout = values.timeout === undefined ? 60 : Number(values.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0)
      throw new UsageError('--timeout must be a positive number of seconds');
    const config = loadConfig();
    const db = await openDatabase(config, cliLogger(config));
    try {
      if (sub === 'rotate')
        return await rotate(
          db.pool,
          values.use ? [values.use as KeyUse] : ['sig', 'enc', 'pq-sig', 'pq-enc'],
          Boolean(values.now),
          timeout * 1000,
        );
      const keys = await keyHistory(db.pool);
      if (values.json) print(JSON.stringify(keys, null, 2));
      else
        print(
          table(
            keys.map((k) => ({
              kid: k.kid,
              use: k.use,
              alg: k.alg,
              state: k.state,
              created: k.created,
              published: k.published ?? '',
              activated: k.activated ?? '',
              deactivated: k.deactivated ?? '',
              destroyed: k.destroyed ?? '',
            })),
            ['kid', 'use', 'alg', 'state', 'created', 'published', 'activated', 'deactivated', 'destroyed'],
          ),
        );
      return 0;
    } finally {
      await db.close();
    }
  },
};

/**
 * Many processes on one database, as deployed at scale: two `gateway serve`
 * (HTTP only) and two `gateway worker` (jobs only), all on one PostgreSQL
 * server of their own (Debian `postgresql`, started here) and one HSM token.
 * EHR clients submit to both serve processes with Idempotency-Keys and
 * retries while every process is restarted in turn (SIGTERM, wait for its
 * exit, start it again): nothing lost, nothing doubled at the receiver, no
 * 500.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { cleanEnv, exited, runCli, spawnCli, waitFor } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';
import { startPgCluster, type PgCluster } from '../helpers/pg-cluster.ts';
import { allDelivered, retryingLoad, startFaultGateway, type FaultGateway } from '../helpers/db-fault.ts';

interface Proc {
  name: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  child: ReturnType<typeof spawnCli>;
  ready(): Promise<void>;
}

async function launch(name: string, args: string[], env: NodeJS.ProcessEnv, url?: string): Promise<Proc> {
  const proc: Proc = {
    name,
    args,
    env,
    child: spawnCli(args, env),
    ready: async () => {
      const child = proc.child;
      try {
        await waitFor(
          async () =>
            child.exitCode === null &&
            (url ? (await fetch(`${url}/ready`)).status === 200 : child.output().includes('worker started')),
          60_000,
          `${name} ready`,
        );
      } catch (err) {
        throw new Error(`${(err as Error).message}\n${child.output().slice(-4000)}`);
      }
    },
  };
  await proc.ready();
  return proc;
}

describe('two serve and two worker processes, restarted one at a time under load', () => {
  let cluster: PgCluster;
  let gw: FaultGateway;
  const procs: Proc[] = [];

  beforeAll(async () => {
    cluster = await startPgCluster();
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query('CREATE DATABASE gateway');
    await admin.end();
    // The first serve process migrates and holds the test's client and partner; the rest join it.
    gw = await startFaultGateway({}, cluster.url.replace(/\/postgres$/, '/gateway'), 'serve');
    const port2 = await freePort();
    procs.push({
      name: 'serve-1',
      args: ['serve'],
      env: gw.env,
      child: gw.child,
      ready: () => waitFor(async () => (await fetch(`${gw.url}/ready`)).status === 200, 60_000, 'serve-1').then(),
    });
    procs.push(await launch('serve-2', ['serve'], { ...gw.env, PORT: String(port2) }, `http://127.0.0.1:${port2}`));
    const workerEnv = { ...gw.env, LOG_LEVEL: 'info', PORT: String(await freePort()) };
    for (const name of ['worker-1', 'worker-2']) procs.push(await launch(name, ['worker'], workerEnv));
  }, 170_000);
  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await gw?.close();
    await cluster?.destroy();
  });

  it('loses nothing, sends each delivery once, and never answers 500', async () => {
    const urls = [gw.url, `http://127.0.0.1:${procs[1]!.env.PORT}`];
    const load = retryingLoad({ urls, auth: gw.ehrAuth, partnerId: gw.recipient.id });
    await waitFor(async () => load.acknowledged.size >= 10, 60_000, 'load under way');

    const restarts: string[] = [];
    for (const p of procs) {
      const began = Date.now();
      p.child.kill('SIGTERM');
      const code = await exited(p.child, 60_000);
      expect(code, `${p.name}\n${p.child.output().slice(-3000)}`).toBe(0);
      p.child = spawnCli(p.args, p.env);
      await p.ready();
      restarts.push(`${p.name}=${Date.now() - began}ms@${new Date(began).toISOString().slice(11, 19)}`);
      await sleep(1_000);
    }
    await sleep(1_000);
    await load.stop();

    const tries = load.tries;
    const statuses = new Map<number, number>();
    for (const t of tries) statuses.set(t.status, (statuses.get(t.status) ?? 0) + 1);
    expect(tries.filter((t) => t.status === 500)).toEqual([]);
    // A stopped serve process refuses connections (0) until it is back; the client tries the other one.
    expect(tries.filter((t) => ![0, 200, 202, 503].includes(t.status))).toEqual([]);

    const acked = [...load.acknowledged];
    const { rows } = await gw.db.query<{ id: string; key: string }>(
      'SELECT id::text, idempotency_key AS key FROM exchanges',
    );
    const stored = new Map(rows.map((r) => [r.key, r.id]));
    const lost = acked.filter(([key, id]) => stored.get(key) !== id);
    expect(lost).toEqual([]);
    expect(rows.length).toBe(acked.length);

    const refused = await gw.db.query<{ n: number; first: Date; last: Date }>(
      `SELECT count(*)::int AS n, min(updated_at) AS first, max(updated_at) AS last FROM deliveries WHERE state = 'failed'`,
    );
    expect(refused.rows[0]!.n, `${JSON.stringify(refused.rows[0])} ${restarts.join(',')}`).toBe(0);
    await allDelivered(
      gw,
      acked.map(([, id]) => id),
      60_000,
    );
    // Once each at the receiver, and no delivery sent twice: a worker stopped by SIGTERM finishes what it holds.
    expect(gw.recipient.received.size).toBe(acked.length);
    expect(gw.recipient.posts.length).toBe(acked.length);

    const verify = await runCli(['audit', 'verify', '--db'], cleanEnv({ DATABASE_URL: gw.dbUrl }));
    expect(verify.stdout, verify.stderr).toMatch(/^OK: /);

    console.log(
      `many-processes: serve=2 worker=2 acknowledged=${acked.length} tries=${tries.length} ` +
        `statuses=${JSON.stringify(Object.fromEntries(statuses))} restarts=${restarts.join(',')} lost=${lost.length} ` +
        `duplicated=${rows.length - acked.length} receiver-posts=${gw.recipient.posts.length} received=${gw.recipient.received.size}`,
    );
    for (const p of procs) {
      p.child.kill('SIGTERM');
      expect(await exited(p.child)).toBe(0);
    }
  }, 240_000);
});

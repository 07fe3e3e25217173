/**
 * Many processes on one database, as deployed at scale: two `gateway serve`
 * (HTTP only) and two `gateway worker` (jobs only), all on one PostgreSQL
 * server of their own (Debian `postgresql`, started here) and one HSM token
 * reached over p11-kit's remoting (`p11-kit server` on a Unix socket, every
 * process on p11-kit-client.so), as docker-compose runs it and as a network
 * HSM would be. EHR clients submit to both serve processes with
 * Idempotency-Keys and retries while every process is restarted in turn
 * (SIGTERM, wait for its exit, start it again): nothing lost, nothing doubled
 * at the receiver, no 500. Meanwhile the scheduled work (audit checkpoints,
 * partner key refresh, key rotation) is made due every minute, and must leave
 * one record per period, not one per worker; and a client's rate limit is
 * held per serve process, as documented (N processes, N times the limit).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { cleanEnv, exited, runCli, spawnCli, waitFor } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';
import { startPgCluster, type PgCluster } from '../helpers/pg-cluster.ts';
import { allDelivered, retryingLoad, startFaultGateway, type FaultGateway } from '../helpers/db-fault.ts';
import { createTestToken } from '../helpers/hsm.ts';
import { P11_KIT_CLIENT, p11KitServer, type P11KitServer } from '../helpers/p11-kit.ts';
import { testClient } from '../helpers/auth.ts';
import type { TestGateway } from '../helpers/gateway.ts';
import { SCOPE_ADMIN } from '../../src/auth/scopes.ts';

/**
 * Scheduled work made due at every cron run (each minute): a checkpoint (the log grows under load), a
 * partner JWKS refresh, and a blinding key rotation. Run once per period, each leaves one record a minute.
 */
const DUE_EVERY_RUN = { PARTNER_JWKS_REFRESH: '1s', KEY_BLINDING_ROTATION: '5s' };
/** How long after a minute boundary its cron job is given to have run and left its record. */
const SCHEDULE_GRACE_MS = 15_000;
const RATE_LIMIT = 30;

/** Start times of the records each scheduled job leaves, oldest first. */
async function scheduledRecords(db: pg.Pool) {
  const times = async (sql: string) =>
    (await db.query<{ at: Date }>(sql)).rows.map((r) => r.at.getTime()).sort((a, b) => a - b);
  return {
    checkpoints: await times('SELECT issued_at AS at FROM audit_checkpoints'),
    refreshes: await times('SELECT checked_at AS at FROM test_partner_checks'),
    rotations: await times("SELECT published_at AS at FROM gateway_keys WHERE use = 'blinding'"),
  };
}

/** Smallest gap between consecutive records: two workers running one period's job would leave two close together. */
const minGap = (at: number[]) => Math.min(...at.slice(1).map((t, i) => t - at[i]!));

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
  let hsm: P11KitServer;
  const procs: Proc[] = [];

  beforeAll(async () => {
    const token = createTestToken();
    hsm = p11KitServer(token);
    await hsm.start();
    const hsmEnv = {
      HSM_MODULE: P11_KIT_CLIENT,
      P11_KIT_SERVER_ADDRESS: hsm.address,
      HSM_TOKEN_LABEL: token.label,
      HSM_PIN: token.pin,
    };
    cluster = await startPgCluster();
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query('CREATE DATABASE gateway');
    await admin.end();
    // The first serve process migrates and holds the test's client and partner; the rest join it.
    gw = await startFaultGateway(
      // RATE_LIMIT=0: the EHR load client is not limited; the rate-limit check uses a client limited of its own.
      { ...hsmEnv, ...DUE_EVERY_RUN, RATE_LIMIT: '0' },
      cluster.url.replace(/\/postgres$/, '/gateway'),
      'serve',
    );
    // Each partner refresh overwrites its partner_jwks_checks row; the test keeps every version it writes.
    await gw.db.query(`
      CREATE TABLE test_partner_checks (checked_at timestamptz NOT NULL);
      CREATE FUNCTION test_partner_check() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN INSERT INTO test_partner_checks VALUES (NEW.checked_at); RETURN NEW; END $$;
      CREATE TRIGGER test_partner_check AFTER INSERT OR UPDATE ON partner_jwks_checks
        FOR EACH ROW EXECUTE FUNCTION test_partner_check();`);
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
    await hsm?.kill();
  });

  it('loses nothing, sends each delivery once, and never answers 500', async () => {
    const urls = [gw.url, `http://127.0.0.1:${procs[1]!.env.PORT}`];
    const loadFrom = Date.now();
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
    // Keep the load on until the scheduled work has run at two minute boundaries (cron periods) since it began.
    const secondBoundary = Math.ceil(loadFrom / 60_000) * 60_000 + 60_000;
    await sleep(Math.max(1_000, secondBoundary + SCHEDULE_GRACE_MS - Date.now()));
    await load.stop();
    const loadEnd = Date.now();

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

    // Scheduled work: every minute's job ran once across the two workers (and restarts), never once per worker.
    const records = await scheduledRecords(gw.db);
    const ranFor = loadEnd - loadFrom;
    // The boundaries whose job had its grace to run inside the window; one more may have run late at its start.
    const periods = Math.floor((loadEnd - SCHEDULE_GRACE_MS) / 60_000) - Math.floor(loadFrom / 60_000);
    expect(periods).toBeGreaterThanOrEqual(2);
    for (const [job, at] of Object.entries(records)) {
      const during = at.filter((t) => t >= loadFrom && t <= loadEnd);
      const seen = `${job}: ${during.map((t) => new Date(t).toISOString()).join(' ')}`;
      expect(during.length, seen).toBeGreaterThanOrEqual(periods);
      expect(during.length, seen).toBeLessThanOrEqual(periods + 1);
      expect(minGap(during), seen).toBeGreaterThan(30_000);
    }

    // Rate limits are per serve process (in memory): a burst reaches RATE_LIMIT on each, N times it in all.
    const rateLimited = await rateBurst(gw, urls);

    console.log(
      `many-processes: hsm=p11-kit serve=2 worker=2 acknowledged=${acked.length} tries=${tries.length} ` +
        `statuses=${JSON.stringify(Object.fromEntries(statuses))} restarts=${restarts.join(',')} lost=${lost.length} ` +
        `duplicated=${rows.length - acked.length} receiver-posts=${gw.recipient.posts.length} received=${gw.recipient.received.size} ` +
        `scheduled(${Math.round(ranFor / 1000)}s)=${Object.entries(records)
          .map(([job, at]) => `${job}:${at.filter((t) => t >= loadFrom && t <= loadEnd).length}`)
          .join(',')} ` +
        `periods=${periods} min-gap=${Object.values(records)
          .map((at) => Math.round(minGap(at.filter((t) => t >= loadFrom && t <= loadEnd)) / 1000))
          .join('/')}s ` +
        `rate-limit=${RATE_LIMIT}/min allowed-per-serve=${rateLimited.allowed.join('+')}`,
    );
    for (const p of procs) {
      p.child.kill('SIGTERM');
      expect(await exited(p.child)).toBe(0);
    }
  }, 360_000);
});

/**
 * A burst of admin reads from one client with RATE_LIMIT per minute, to each serve process in turn: each
 * process allows about RATE_LIMIT (its own bucket, refilling at RATE_LIMIT a minute) and refuses the rest with
 * 429 and Retry-After.
 */
async function rateBurst(gw: FaultGateway, urls: string[]): Promise<{ allowed: number[] }> {
  const shim = {
    app: { ctx: { pool: gw.db }, server: urls[0] },
    config: { baseUrl: urls[0] },
  } as unknown as TestGateway;
  const client = await testClient(shim, { scopes: [SCOPE_ADMIN], rateLimit: RATE_LIMIT });
  const bearer = await client.bearer(); // the token request is charged by the first process
  const allowed: number[] = [];
  for (const url of urls) {
    const began = Date.now();
    const statuses: number[] = [];
    for (let i = 0; i < 2 * RATE_LIMIT; i++) {
      const res = await fetch(`${url}/admin/partners`, { headers: { authorization: bearer } });
      await res.arrayBuffer();
      statuses.push(res.status);
      if (res.status === 429) expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    }
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
    const ok = statuses.filter((s) => s === 200).length;
    const refill = Math.ceil(((Date.now() - began) / 60_000) * RATE_LIMIT) + 1;
    expect(ok, url).toBeGreaterThanOrEqual(RATE_LIMIT - 1);
    expect(ok, url).toBeLessThanOrEqual(RATE_LIMIT + refill);
    allowed.push(ok);
  }
  // The documented factor: N serve processes, up to N times the limit.
  expect(allowed.reduce((a, b) => a + b, 0)).toBeGreaterThan(RATE_LIMIT * (urls.length - 1) + RATE_LIMIT / 2);
  return { allowed };
}

import { expect } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import request from 'supertest';
import type { JWK } from 'jose';
import { cleanEnv, spawnCli, waitFor } from './cli.ts';
import { freePort } from './ports.ts';
import { testClient } from './auth.ts';
import { startTestRecipient, type TestRecipient } from './recipient.ts';
import { messageBundle } from './outbound.ts';
import type { TestGateway } from './gateway.ts';
import { createPool } from '../../src/db/pool.ts';
import { SCOPE_ADMIN, SCOPE_BUNDLE_WRITE } from '../../src/auth/scopes.ts';
import { ASSERTION_TYPE, TOKEN_PATH } from '../../src/auth/token-endpoint.ts';

/**
 * A `gateway start` process (HTTP and worker, as deployed) for database
 * fault tests, with an EHR client, a partner that receives its deliveries,
 * and a pool of the test's own on the gateway's database to check the
 * outcome. Being a separate process, a crash of the gateway shows as an exit.
 */
export interface FaultGateway {
  child: ReturnType<typeof spawnCli>;
  /** The environment it runs with: more processes on the same database and DATA_DIR take it too. */
  env: NodeJS.ProcessEnv;
  url: string;
  dataDir: string;
  /** The gateway's database, and the test's own pool on it (errors swallowed: it goes down too). */
  dbUrl: string;
  db: pg.Pool;
  ehrAuth: string;
  /** An admin client's bearer token (e.g. to register another partner). */
  adminAuth: string;
  tokenRequest(): Promise<Response>;
  recipient: TestRecipient;
  close(): Promise<void>;
}

export async function startFaultGateway(
  env: Record<string, string>,
  databaseUrl?: string,
  command: 'start' | 'serve' = 'start',
): Promise<FaultGateway> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gw-dbfault-'));
  const port = await freePort();
  const org = env.ORG_ID ?? 'urn:test:dbfault-gateway';
  const full = cleanEnv({
    DATA_DIR: dataDir,
    PORT: String(port),
    HOST: '127.0.0.1',
    ORG_ID: org,
    DELIVERY_RETRY_BASE: '100ms',
    DELIVERY_RETRY_MAX: '500ms',
    DELIVERY_TIMEOUT: '10s',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ...env,
  });
  const url = `http://127.0.0.1:${port}`;
  const child = spawnCli([command], full);
  try {
    await waitFor(async () => (await fetch(`${url}/ready`)).status === 200, 90_000, 'gateway /ready');
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n${child.output()}`);
  }
  const dbUrl = databaseUrl ?? embeddedUrl(dataDir, full.EMBEDDED_PG_PORT ?? '');
  // The gateway's own pool: it reads a multi-host DATABASE_URL as the gateway does; its warnings are not the test's.
  const db = createPool(dbUrl, { warn: () => undefined }, 4);

  // The test's helpers speak to a TestGateway; supertest takes the URL of a running server as well.
  const shim = { app: { ctx: { pool: db }, server: url }, config: { baseUrl: url } } as unknown as TestGateway;
  const ehr = await testClient(shim, { scopes: [SCOPE_BUNDLE_WRITE] });
  const admin = await testClient(shim, { scopes: [SCOPE_ADMIN] });
  let jwks: { keys: JWK[] } | undefined;
  const recipient = await startTestRecipient({
    senderId: org,
    // The last keys fetched serve while this process restarts (a partner caches them the same way).
    senderJwks: async () => {
      const res = await fetch(`${url}/.well-known/jwks.json`).catch(() => undefined);
      const fetched = res?.ok ? ((await res.json()) as { keys?: JWK[] }) : undefined;
      if (fetched?.keys) jwks = { keys: fetched.keys };
      if (!jwks) throw new Error(`the gateway's JWKS: HTTP ${res?.status ?? 'no answer'}`);
      return jwks;
    },
  });
  await request(url)
    .post('/admin/partners')
    .set('authorization', await admin.bearer())
    .send({ id: recipient.id, name: 'partner', endpoint: recipient.inbox, jwks_uri: recipient.jwksUri })
    .expect(201);
  return {
    child,
    env: full,
    url,
    dataDir,
    dbUrl,
    db,
    ehrAuth: await ehr.bearer(),
    adminAuth: await admin.bearer(),
    tokenRequest: async () =>
      fetch(`${url}${TOKEN_PATH}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'client_credentials',
          client_assertion_type: ASSERTION_TYPE,
          client_assertion: await ehr.assertion(),
          scope: SCOPE_BUNDLE_WRITE,
        }),
      }),
    recipient,
    close: async () => {
      if (child.exitCode === null) child.kill('SIGKILL');
      await db.end().catch(() => undefined);
      await recipient.close();
    },
  };
}

function embeddedUrl(dataDir: string, port: string): string {
  const c = JSON.parse(readFileSync(join(dataDir, 'pg-credentials.json'), 'utf8')) as {
    user: string;
    password: string;
  };
  return `postgres://${c.user}:${encodeURIComponent(c.password)}@127.0.0.1:${port}/gateway`;
}

export interface Answer {
  what: 'intake' | 'ready';
  sentAt: number;
  answeredAt: number;
  /** 0: no HTTP answer at all (the connection failed). */
  status: number;
  retryAfter: string | null;
  location: string | null;
  body: string;
}

/** A few EHR clients posting bundles back to back, and a /ready poller, until stop(). */
export function intakeLoad(gw: FaultGateway, clients = 4) {
  const answers: Answer[] = [];
  let running = true;
  const call = async (what: Answer['what'], path: string, init: RequestInit) => {
    const sentAt = Date.now();
    try {
      const res = await fetch(`${gw.url}${path}`, init);
      const body = await res.text();
      answers.push({
        what,
        sentAt,
        answeredAt: Date.now(),
        status: res.status,
        retryAfter: res.headers.get('retry-after'),
        location: res.headers.get('location'),
        body,
      });
    } catch (err) {
      answers.push({
        what,
        sentAt,
        answeredAt: Date.now(),
        status: 0,
        retryAfter: null,
        location: null,
        body: String(err),
      });
    }
  };
  const intake = async () => {
    while (running) {
      await call('intake', '/fhir/$process-message', {
        method: 'POST',
        headers: { authorization: gw.ehrAuth, 'content-type': 'application/fhir+json' },
        body: messageBundle([gw.recipient.id]),
      });
      await sleep(20);
    }
  };
  const ready = async () => {
    while (running) {
      await call('ready', '/ready', {});
      await sleep(100);
    }
  };
  const loops = [...Array.from({ length: clients }, intake), ready()];
  return {
    answers,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Poll the database directly until it accepts a session; the start time of the last failed try bounds the outage. */
export async function probeUntilUp(url: string, timeoutMs: number): Promise<{ lastFailedAt: number; upAt: number }> {
  let lastFailedAt = 0;
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const startedAt = Date.now();
    // A generous timeout: a probe that times out on a loaded machine must not count a server that is up as down.
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
      return { lastFailedAt, upAt: Date.now() };
    } catch {
      lastFailedAt = startedAt;
    } finally {
      await client.end().catch(() => undefined);
    }
    await sleep(50);
  }
  throw new Error(`the database did not come back within ${timeoutMs} ms`);
}

export const exchangeId = (a: Answer) => a.location?.split('/').pop() ?? '';

/** Every answer sent and answered inside [from, to]: while the database was down. */
export const within = (answers: Answer[], from: number, to: number) =>
  answers.filter((a) => a.sentAt >= from && a.answeredAt <= to);

/** Wait until every accepted exchange's deliveries are delivered; returns how many deliveries that was. */
export async function allDelivered(gw: FaultGateway, ids: string[], timeoutMs: number): Promise<number> {
  let n = 0;
  const check = waitFor(
    async () => {
      const { rows } = await gw.db.query<{ total: number; delivered: number }>(
        `SELECT count(*)::int AS total, count(*) FILTER (WHERE state = 'delivered')::int AS delivered
           FROM deliveries WHERE exchange_id = ANY($1::uuid[])`,
        [ids],
      );
      n = rows[0]!.total;
      return rows[0]!.total === ids.length && rows[0]!.delivered === ids.length;
    },
    timeoutMs,
    'every accepted exchange delivered',
  );
  try {
    await check;
  } catch (err) {
    // Say what is stuck: the undelivered rows and their jobs.
    const { rows } = await gw.db.query(
      `SELECT d.state, d.attempts, d.last_error, j.locked_by, j.locked_at, j.run_at, j.attempts AS job_attempts, j.last_error AS job_error
         FROM deliveries d LEFT JOIN graphile_worker._private_jobs j ON j.key = d.id::text
        WHERE d.exchange_id = ANY($1::uuid[]) AND d.state <> 'delivered' LIMIT 5`,
      [ids],
    );
    throw new Error(
      `${(err as Error).message}: ${JSON.stringify(rows)}\n${gw.child
        .output()
        .split('\n')
        .filter((l) => !l.includes('request failed'))
        .join('\n')
        .slice(-6000)}`,
    );
  }
  return n;
}

/** No acknowledged exchange lost: every 202 answered was committed, and each is delivered to the partner. */
export async function expectAcknowledgedDelivered(gw: FaultGateway, answers: Answer[]): Promise<void> {
  const accepted = answers.filter((a) => a.what === 'intake' && a.status === 202).map(exchangeId);
  expect(accepted.length).toBeGreaterThan(0);
  const { rows } = await gw.db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM exchanges WHERE id = ANY($1::uuid[])',
    [accepted],
  );
  expect(rows[0]!.n).toBe(accepted.length);
  await allDelivered(gw, accepted, 30_000);
}

/** One answer to one try of a submission that an EHR retries with its Idempotency-Key until acknowledged. */
export interface Try {
  key: string;
  url: string;
  sentAt: number;
  answeredAt: number;
  /** 0: no HTTP answer at all (the connection failed). */
  status: number;
  retryAfter: string | null;
  exchangeId: string;
}

/**
 * EHR clients as a real one behaves: each submission carries a fresh
 * Idempotency-Key and is retried with the same key and body, after a 503
 * (waiting its Retry-After, capped so that a test sees recovery promptly)
 * or a failed connection, until it is acknowledged. Submissions go round the
 * given gateway URLs; each bundle's narrative carries its key, so a receiving
 * EHR can tell one submission from another. stop() lets every client finish the submission it is
 * on, so that every key used ends acknowledged.
 */
export function retryingLoad(opts: { urls: string[]; auth: string; partnerId: string; clients?: number }) {
  const tries: Try[] = [];
  const acknowledged = new Map<string, string>();
  let running = true;
  let turn = 0;
  const submitOnce = async (key: string, body: string) => {
    for (let attempt = 0; ; attempt++) {
      const url = opts.urls[turn++ % opts.urls.length]!;
      const sentAt = Date.now();
      let status = 0;
      let retryAfter: string | null = null;
      let location: string | null = null;
      try {
        const res = await fetch(`${url}/fhir/$process-message`, {
          method: 'POST',
          headers: { authorization: opts.auth, 'content-type': 'application/fhir+json', 'idempotency-key': key },
          body,
          signal: AbortSignal.timeout(30_000),
        });
        await res.arrayBuffer();
        status = res.status;
        retryAfter = res.headers.get('retry-after');
        location = res.headers.get('location');
      } catch {
        status = 0;
      }
      const id = location?.split('/').pop() ?? '';
      tries.push({ key, url, sentAt, answeredAt: Date.now(), status, retryAfter, exchangeId: id });
      if (status === 200 || status === 202) {
        acknowledged.set(key, id);
        return;
      }
      if (status !== 0 && status !== 503) return; // anything else is a fault the test reports; no retry hides it
      await sleep(Math.min(1_000, Number(retryAfter ?? '0') * 1_000 || 200));
    }
  };
  const client = async (n: number) => {
    for (let i = 0; running; i++) {
      const key = `topo-${n}-${i}-${randomUUID()}`;
      await submitOnce(key, messageBundle([opts.partnerId], 2_000, key));
      await sleep(20);
    }
  };
  const loops = Array.from({ length: opts.clients ?? 4 }, (_, n) => client(n));
  return {
    tries,
    acknowledged,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

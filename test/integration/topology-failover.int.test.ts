/**
 * A replicated PostgreSQL: a primary and a streaming hot standby
 * (pg_basebackup -R, synchronous replication), both Debian `postgresql`
 * servers started here, and a `gateway start` process given both in one
 * multi-host DATABASE_URL (target_session_attrs=read-write). While EHR
 * clients submit with Idempotency-Keys and retries and the gateway delivers
 * to a partner, the primary is stopped hard (pg_ctl stop -m immediate) and
 * the standby promoted. Nothing acknowledged may be lost or doubled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { cleanEnv, exited, runCli, waitFor } from '../helpers/cli.ts';
import { startPgCluster, type PgCluster } from '../helpers/pg-cluster.ts';
import { allDelivered, retryingLoad, startFaultGateway, type FaultGateway } from '../helpers/db-fault.ts';

const DOWN_MS = 2_000;

async function sql<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

describe('primary lost and standby promoted under load (synchronous replication)', () => {
  let primary: PgCluster;
  let standby: PgCluster;
  let gw: FaultGateway;
  let databaseUrl: string;

  beforeAll(async () => {
    primary = await startPgCluster();
    await sql(primary.url, 'CREATE DATABASE gateway');
    standby = await primary.standby();
    // Only now: with no standby connected, a synchronous commit waits for good. '*': any connected
    // standby is the synchronous one; a commit returns once the standby has flushed its WAL.
    await sql(primary.url, "ALTER SYSTEM SET synchronous_standby_names = '*'");
    await sql(primary.url, 'ALTER SYSTEM SET synchronous_commit = on');
    await sql(primary.url, 'SELECT pg_reload_conf()');
    await waitFor(
      async () =>
        (await sql<{ s: string }>(primary.url, 'SELECT sync_state AS s FROM pg_stat_replication'))[0]?.s === 'sync',
      30_000,
      'the standby streaming synchronously',
    );
    databaseUrl = `postgres://gateway:cluster-test@127.0.0.1:${primary.port},127.0.0.1:${standby.port}/gateway?target_session_attrs=read-write`;
    gw = await startFaultGateway({}, databaseUrl);
  }, 150_000);
  afterAll(async () => {
    await gw?.close();
    await standby?.destroy();
    await primary?.destroy();
  });

  it('answers 503 while there is no primary, recovers after promotion, loses and doubles nothing', async () => {
    const load = retryingLoad({ urls: [gw.url], auth: gw.ehrAuth, partnerId: gw.recipient.id });
    await waitFor(async () => load.acknowledged.size >= 20, 60_000, 'load under way');
    const ackedBefore = load.acknowledged.size;

    await primary.kill();
    const downFrom = Date.now();
    await sleep(DOWN_MS);
    const promoteFrom = Date.now();
    await standby.promote();
    const promotedAt = Date.now();
    const recoveryMs = await waitFor(
      async () => load.tries.some((t) => t.status === 202 && t.sentAt >= promotedAt),
      30_000,
      'a submission acknowledged after promotion',
    );
    await sleep(2_000);
    await load.stop();
    expect(gw.child.exitCode, gw.child.output()).toBeNull();

    const tries = load.tries;
    const statuses = new Map<number, number>();
    for (const t of tries) statuses.set(t.status, (statuses.get(t.status) ?? 0) + 1);
    expect(tries.filter((t) => t.status === 500)).toEqual([]);
    expect(tries.filter((t) => ![200, 202, 503].includes(t.status))).toEqual([]);
    for (const t of tries.filter((x) => x.status === 503)) expect(t.retryAfter).toBe('5');
    // No acknowledgement while no server could commit it.
    const noPrimary = tries.filter((t) => t.sentAt >= downFrom && t.answeredAt <= promoteFrom);
    expect(noPrimary.length).toBeGreaterThan(0);
    expect(noPrimary.filter((t) => t.status !== 503)).toEqual([]);
    expect(recoveryMs).toBeLessThan(30_000);

    // Every acknowledged exchange is on the new primary, once per Idempotency-Key, and nothing else is.
    const acked = [...load.acknowledged];
    const ids = acked.map(([, id]) => id);
    const rows = await sql<{ id: string; key: string }>(
      standby.url.replace(/\/postgres$/, '/gateway'),
      'SELECT id::text, idempotency_key AS key FROM exchanges',
    );
    const stored = new Map(rows.map((r) => [r.key, r.id]));
    const lost = acked.filter(([key, id]) => stored.get(key) !== id);
    expect(lost).toEqual([]);
    expect(rows.length).toBe(acked.length);

    // Each delivered exactly once as the receiving EHR sees it.
    await allDelivered(gw, ids, 60_000);
    expect(gw.recipient.received.size).toBe(acked.length);

    const verify = await runCli(
      ['audit', 'verify', '--db'],
      cleanEnv({ DATA_DIR: gw.dataDir, DATABASE_URL: databaseUrl }),
    );
    expect(verify.stdout, verify.stderr).toMatch(/^OK: /);
    expect(verify.code).toBe(0);

    console.log(
      `failover(sync): acknowledged=${acked.length} (before kill ${ackedBefore}) tries=${tries.length} ` +
        `statuses=${JSON.stringify(Object.fromEntries(statuses))} no-primary-window=${promoteFrom - downFrom}ms ` +
        `503-while-down=${noPrimary.length} recovery-after-promote=${recoveryMs}ms lost=${lost.length} ` +
        `duplicated=${rows.length - acked.length} receiver-posts=${gw.recipient.posts.length} received=${gw.recipient.received.size}`,
    );

    gw.child.kill('SIGTERM');
    expect(await exited(gw.child)).toBe(0);
  }, 120_000);
});

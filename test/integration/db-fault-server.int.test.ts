/**
 * DATABASE_URL points at a PostgreSQL server of its own (Debian's
 * `postgresql` binaries, a cluster made with initdb for this test), which an
 * operator stops (pg_ctl stop -m fast: every session ends with 57P01) and
 * starts again while EHR clients post bundles to a `gateway start` process.
 * The down window is exact here: from pg_ctl stop returning to pg_ctl start
 * being run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { exited, waitFor } from '../helpers/cli.ts';
import { messageBundle } from '../helpers/outbound.ts';
import { startPgCluster, type PgCluster } from '../helpers/pg-cluster.ts';
import {
  expectAcknowledgedDelivered,
  intakeLoad,
  startFaultGateway,
  within,
  type FaultGateway,
} from '../helpers/db-fault.ts';

const DOWN_MS = 3_000;

describe('separate PostgreSQL server stopped and started under intake load', () => {
  let cluster: PgCluster;
  let gw: FaultGateway;

  beforeAll(async () => {
    cluster = await startPgCluster();
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query('CREATE DATABASE gateway');
    await admin.end();
    gw = await startFaultGateway({}, cluster.url.replace(/\/postgres$/, '/gateway'));
  });
  afterAll(async () => {
    await gw?.close();
    await cluster?.destroy();
  });

  it('answers 503 with Retry-After while it is down, recovers within 30 s, loses nothing, never exits', async () => {
    const load = intakeLoad(gw);
    await sleep(1_500);
    await cluster.stop();
    const downFrom = Date.now();

    // While it is down, every kind of request says so: intake, the token endpoint, readiness.
    const intake = await fetch(`${gw.url}/fhir/$process-message`, {
      method: 'POST',
      headers: { authorization: gw.ehrAuth, 'content-type': 'application/fhir+json' },
      body: messageBundle([gw.recipient.id]),
    });
    expect(intake.status).toBe(503);
    expect(intake.headers.get('retry-after')).toBe('5');
    const outcome = (await intake.json()) as { resourceType: string; issue: Array<Record<string, unknown>> };
    expect(outcome).toMatchObject({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'transient', details: { coding: [{ code: 'UNAVAILABLE' }] } }],
    });
    expect(outcome.issue[0]!.diagnostics).toBe('the database is unavailable; retry later');
    const token = await gw.tokenRequest();
    expect(token.status).toBe(503);
    expect(token.headers.get('retry-after')).toBe('5');
    expect(await token.json()).toMatchObject({ error: 'temporarily_unavailable' });
    const ready = await fetch(`${gw.url}/ready`);
    expect(ready.status).toBe(503);
    expect(JSON.stringify(await ready.json())).toContain('database:');

    await sleep(Math.max(0, DOWN_MS - (Date.now() - downFrom)));
    const downTo = Date.now();
    await cluster.start();
    const readyMs = await waitFor(async () => (await fetch(`${gw.url}/ready`)).status === 200, 30_000, '/ready 200');
    const recoveredAt = Date.now();
    await sleep(1_500);
    await load.stop();
    expect(gw.child.exitCode, gw.child.output()).toBeNull();
    expect(readyMs).toBeLessThan(30_000);

    const answers = load.answers;
    expect(answers.filter((a) => a.status === 0)).toEqual([]);
    expect(answers.filter((a) => a.status === 500)).toEqual([]);
    expect(answers.filter((a) => a.status !== 202 && a.status !== 200 && a.status !== 503)).toEqual([]);
    const down = within(answers, downFrom, downTo);
    expect(down.filter((a) => a.what === 'intake').length).toBeGreaterThan(10);
    expect(down.filter((a) => a.status !== 503)).toEqual([]); // no 202 while down
    for (const a of answers.filter((x) => x.status === 503)) expect(a.retryAfter).toBe('5');
    expect(answers.some((a) => a.what === 'intake' && a.status === 202 && a.sentAt > recoveredAt)).toBe(true);

    await expectAcknowledgedDelivered(gw, answers);

    gw.child.kill('SIGTERM');
    expect(await exited(gw.child)).toBe(0);
  });
});

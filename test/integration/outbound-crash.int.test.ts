import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import type { ChildProcess } from 'node:child_process';
import { cleanEnv, spawnCli } from '../helpers/cli.ts';
import { messageBundle, settled, startOutbound, waitFor, type Outbound } from '../helpers/outbound.ts';

describe('outbound: a SIGKILLed worker loses nothing', () => {
  let o: Outbound;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    o = await startOutbound({}, 1, { worker: false });
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await o?.close();
  });

  const worker = () => {
    const { config, token } = o.gw;
    const child = spawnCli(
      ['worker'],
      cleanEnv({
        DATABASE_URL: o.gw.databaseUrl,
        DATA_DIR: config.dataDir,
        HSM_MODULE: token.library,
        HSM_TOKEN_LABEL: token.label,
        HSM_PIN: token.pin,
        SOFTHSM2_CONF: process.env.SOFTHSM2_CONF!,
        ORG_ID: config.org,
        DELIVERY_TIMEOUT: '30s',
        DELIVERY_RETRY_BASE: '100ms',
        LOG_LEVEL: 'warn',
      }),
    );
    children.push(child);
    return child;
  };

  it('delivers after a restart what a killed worker was sending, with the same delivery id', async () => {
    const r = o.recipients[0]!;
    r.script.push({ kind: 'hang' });
    const locations: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await request(o.gw.app.server)
        .post('/fhir/$process-message')
        .set('authorization', o.ehrAuth)
        .type('application/fhir+json')
        .send(messageBundle([r.id], 1000, `crash${i}`))
        .expect(202);
      locations.push(res.headers['content-location'] as string);
    }
    const first = worker();
    // Wait until the first worker is mid-delivery (the recipient holds its request open).
    await waitFor(
      'the worker to start a delivery',
      async () => (r.posts.some((p) => p.answered === 'hang') ? true : undefined),
      60_000,
    );
    first.kill('SIGKILL');
    await new Promise<void>((resolve) => first.once('exit', () => resolve()));
    const { rows: locked } = await o.gw.app.ctx.pool.query(
      'SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE locked_by IS NOT NULL',
    );
    expect(locked[0].n).toBeGreaterThanOrEqual(1);

    const second = worker();
    for (const l of locations) {
      const view = await settled(o, l, undefined, 60_000);
      expect(view.recipients[0].state, second.output()).toBe('delivered');
    }
    // The hung delivery was sent twice under one delivery id and accepted once.
    const hungKey = r.posts.find((p) => p.answered === 'hang')!.idempotencyKey!;
    expect(r.posts.filter((p) => p.idempotencyKey === hungKey).length).toBeGreaterThanOrEqual(2);
    expect(r.received.has(hungKey)).toBe(true);
    expect(r.received.size).toBe(3);
    second.kill('SIGTERM');
    await new Promise<void>((resolve) => second.once('exit', () => resolve()));
  }, 120_000);
});

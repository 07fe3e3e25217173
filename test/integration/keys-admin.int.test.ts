import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient } from '../helpers/auth.ts';
import { SCOPE_ADMIN, SCOPE_ALL_READ } from '../../src/auth/scopes.ts';
import { startWorker, type WorkerHandle } from '../../src/worker/runner.ts';
import { runKeysRotate } from '../../src/worker/tasks/keys.ts';
import { keyHistory } from '../../src/keys/history.ts';

const run = promisify(execFile);
const ROOT = new URL('../..', import.meta.url).pathname;
const cli = (args: string[], env: Record<string, string>) =>
  run(`${ROOT}node_modules/.bin/node`, ['bin/gateway.js', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'silent', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  })
    .then((r) => ({ code: 0, ...r }))
    .catch((e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }));

describe('key inventory: GET /admin/keys, JWKS publication, gateway keys list/rotate', () => {
  let gw: TestGateway;
  let adminAuth: string;
  beforeAll(async () => {
    gw = await startTestGateway({ KEY_PREPUBLISH: '1h', KEY_SIG_ROTATION: '90d' });
    adminAuth = await (await testClient(gw, { scopes: [SCOPE_ADMIN] })).bearer();
  });
  afterAll(async () => gw?.close());

  it('is admin only: 401 without a token, 403 with a token lacking system/gateway.admin', async () => {
    await request(gw.app.server).get('/admin/keys').expect(401);
    const reader = await testClient(gw, { scopes: [SCOPE_ALL_READ] });
    const res = await request(gw.app.server)
      .get('/admin/keys')
      .set('authorization', await reader.bearer())
      .expect(403);
    expect(res.body.resourceType).toBe('OperationOutcome');
  });

  it('publishes a new key before use, then shows the whole history with every state and time', async () => {
    const ctx = gw.app.ctx;
    const before = await keyHistory(ctx.pool);
    const oldSig = before.find((k) => k.use === 'sig' && k.state === 'active')!;

    // Scheduled-style manual rotation: generate and publish; activation waits KEY_PREPUBLISH (1 h here).
    await runKeysRotate(ctx, { use: 'sig', now: false, requestedBy: 'test' });
    let jwks = (await request(gw.app.server).get('/.well-known/jwks.json').expect(200)).body.keys as Array<{
      kid: string;
      kty: string;
      use: string;
    }>;
    const pending = (await keyHistory(ctx.pool)).find((k) => k.use === 'sig' && k.state === 'pre-activation')!;
    expect(pending.published).not.toBeNull();
    expect(jwks.map((k) => k.kid)).toContain(pending.kid);
    expect(jwks.find((k) => k.use === 'sig')!.kid).toBe(oldSig.kid); // the active key is listed first
    expect(ctx.keyring.signer('sig').kid).toBe(oldSig.kid); // not used yet

    // --now: the published key becomes active at once; the old one is deactivated, still published.
    await runKeysRotate(ctx, { use: 'sig', now: true, requestedBy: 'test' });
    expect(ctx.keyring.signer('sig').kid).toBe(pending.kid);
    jwks = (await request(gw.app.server).get('/.well-known/jwks.json').expect(200)).body.keys;
    expect(jwks.filter((k) => k.use === 'sig' && k.kty === 'EC').map((k) => k.kid)).toEqual([pending.kid, oldSig.kid]);

    const res = await request(gw.app.server).get('/admin/keys').set('authorization', adminAuth).expect(200);
    const byKid = Object.fromEntries(res.body.keys.map((k: { kid: string }) => [k.kid, k]));
    // sig (old and new), enc, audit, the post-quantum pq-sig and pq-enc, and the blinding key, which shows no
    // key material and no use to publish.
    expect(res.body.keys).toHaveLength(7);
    const blinding = res.body.keys.find((k: { use: string }) => k.use === 'blinding');
    expect(blinding).toMatchObject({ alg: 'HS256', state: 'active', public_jwk: { kty: 'oct', kid: blinding.kid } });
    expect(Object.keys(blinding.public_jwk).sort()).toEqual(['alg', 'kid', 'kty']);
    expect(blinding.destroy_after).toBeUndefined();
    expect(byKid[oldSig.kid]).toMatchObject({ use: 'sig', alg: 'ES256', state: 'deactivated', destroyed: null });
    expect(byKid[oldSig.kid].deactivated).toEqual(byKid[pending.kid].activated);
    expect(Date.parse(byKid[oldSig.kid].destroy_after)).toBe(
      Date.parse(byKid[oldSig.kid].deactivated) + gw.config.deliveryHorizon + gw.config.keyRetentionMargin,
    );
    expect(byKid[pending.kid]).toMatchObject({
      state: 'active',
      public_jwk: { kty: 'EC', crv: 'P-256', kid: pending.kid },
    });
    expect(Date.parse(byKid[pending.kid].published)).toBeLessThanOrEqual(Date.parse(byKid[pending.kid].activated));
    expect(res.body.pending).toEqual([]);
    expect(JSON.stringify(res.body)).not.toMatch(/"d"\s*:/); // public keys only

    const audit = await ctx.pool.query(
      `SELECT type, entry FROM audit_log WHERE type LIKE 'key.%' AND entry LIKE $1 ORDER BY idx`,
      [`%${pending.kid}%`],
    );
    // The predecessor's deactivation names its successor, in the same transaction as the activation.
    expect(audit.rows.map((r) => r.type)).toEqual([
      'key.generated',
      'key.published',
      'key.deactivated',
      'key.activated',
    ]);
    expect(audit.rows[3].entry).toContain('"id":"test"'); // the administrator who asked
  });

  it('gateway keys rotate asks the worker and waits; without a worker it gives up and changes nothing', async () => {
    const env = { DATABASE_URL: gw.databaseUrl, DATA_DIR: gw.config.dataDir };
    const encBefore = (await keyHistory(gw.app.ctx.pool)).filter((k) => k.use === 'enc');
    const idle = await cli(['keys', 'rotate', '--use', 'enc', '--now', '--timeout', '2'], env);
    expect(idle.code).toBe(1);
    expect(idle.stderr).toMatch(/no worker ran the enc rotation.*Nothing was changed/);
    expect((await keyHistory(gw.app.ctx.pool)).filter((k) => k.use === 'enc')).toEqual(encBefore);
    const queued = await gw.app.ctx.pool.query(
      `SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'keys_rotate' AND key LIKE 'keys_rotate_manual_%'`,
    );
    expect(queued.rows[0].n).toBe(0);

    let worker: WorkerHandle | undefined;
    try {
      worker = await startWorker(gw.app.ctx);
      const done = await cli(['keys', 'rotate', '--use', 'enc', '--now'], env);
      expect(done.code, done.stderr).toBe(0);
      expect(done.stdout).toMatch(/enc: rotated \(new key active now\)/);
    } finally {
      await worker?.stop();
    }
    const list = await cli(['keys', 'list', '--json'], env);
    const enc = (JSON.parse(list.stdout) as Array<{ use: string; state: string; kid: string }>).filter(
      (k) => k.use === 'enc',
    );
    expect(enc.map((k) => k.state).sort()).toEqual(['active', 'deactivated']);
    expect(enc.find((k) => k.state === 'deactivated')!.kid).toBe(encBefore[0]!.kid);
    // The server's keyring (another "process" view) seals to the new key once reloaded; the old one still decrypts.
    await gw.app.ctx.keyring.reload();
    expect(gw.app.ctx.keyring.decryptionKey(encBefore[0]!.kid)).toBeDefined();

    const text = await cli(['keys', 'list'], env);
    expect(text.stdout.split('\n')[0]).toMatch(
      /^KID\s+USE\s+ALG\s+STATE\s+CREATED\s+PUBLISHED\s+ACTIVATED\s+DEACTIVATED\s+DESTROYED/,
    );
    const bad = await cli(['keys', 'rotate', '--use', 'everything'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--use must be one of sig, enc, audit/);
  });
});

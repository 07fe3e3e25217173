import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { startPgCluster } from '../helpers/pg-cluster.ts';
import { startFaultGateway } from '../helpers/db-fault.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';

/**
 * A gateway started while its database is not answering yet (the server is
 * still starting, restarting, or no standby has been promoted) waits for it,
 * up to DATABASE_START_WAIT, instead of exiting at once.
 */
describe('gateway start before its database answers', () => {
  it('waits for the server, migrates and becomes ready once it is up', { timeout: 120_000 }, async () => {
    const server = await startPgCluster();
    try {
      const admin = new pg.Client({ connectionString: server.url });
      await admin.connect();
      await admin.query('CREATE DATABASE gateway');
      await admin.end();
      await server.stop();
      const databaseUrl = server.url.replace(/\/postgres$/, '/gateway');
      // The server comes back 4 s after the gateway starts: well past its 5 s connect timeout's first tries.
      const up = new Promise<void>((resolve, reject) => setTimeout(() => server.start().then(resolve, reject), 4_000));
      const gw = await startFaultGateway({ ORG_ID: 'urn:test:db-start-wait', DATABASE_START_WAIT: '60s' }, databaseUrl);
      try {
        await up;
        expect(gw.child.exitCode).toBeNull();
        expect(gw.child.output()).toMatch(/database not reachable yet; waiting/);
        expect((await fetch(`${gw.url}/ready`)).status).toBe(200);
      } finally {
        await gw.close();
      }
    } finally {
      await server.destroy();
    }
  });

  it('gives up after DATABASE_START_WAIT with the reason, and a non-zero exit', { timeout: 60_000 }, async () => {
    const server = await startPgCluster();
    const databaseUrl = server.url;
    await server.destroy();
    const dataDir = mkdtempSync(join(tmpdir(), 'gw-start-wait-'));
    const started = Date.now();
    const out = await runCli(
      ['start'],
      cleanEnv({
        DATA_DIR: dataDir,
        PORT: String(await freePort()),
        DATABASE_URL: databaseUrl,
        DATABASE_START_WAIT: '2s',
      }),
    );
    expect(out.code).not.toBe(0);
    expect(out.stderr + out.stdout).toMatch(/database not reachable yet; waiting/);
    expect(out.stderr).toMatch(/ECONNREFUSED|connect/);
    // It waited for about DATABASE_START_WAIT, not for good.
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});

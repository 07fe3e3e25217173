import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

const run = promisify(execFile);
const ROOT = new URL('../..', import.meta.url).pathname;

/** The real CLI, in its own process, as an operator would run it from a second shell. */
async function gateway(args: string[], env: Record<string, string>) {
  return run(`${ROOT}node_modules/.bin/node`, ['bin/gateway.js', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
}

describe('gateway keys list', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(async () => gw?.close());

  it('shows kid, use, alg and state of every gateway key from the database', async () => {
    const env = { DATABASE_URL: gw.databaseUrl, LOG_LEVEL: 'silent', DATA_DIR: gw.config.dataDir };
    const { stdout } = await gateway(['keys', 'list'], env);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^kid\s+use\s+alg\s+state\s+created/i);
    const rows = gw.app.keyring.rows();
    expect(rows.map((r) => r.use).sort()).toEqual(['audit', 'blinding', 'enc', 'pq-enc', 'pq-sig', 'sig']);
    for (const row of rows) {
      const line = lines.find((l) => l.startsWith(row.kid));
      expect(line, `${row.use} key ${row.kid}`).toBeDefined();
      expect(line!.split(/\s+/).slice(0, 4)).toEqual([row.kid, row.use, row.alg, 'active']);
    }
    expect(
      lines
        .map((l) => l.split(/\s+/)[1])
        .slice(1)
        .sort(),
    ).toEqual(['audit', 'blinding', 'enc', 'pq-enc', 'pq-sig', 'sig']);

    const json = JSON.parse((await gateway(['keys', 'list', '--json'], env)).stdout) as Array<Record<string, unknown>>;
    expect(json.map((k) => [k.use, k.alg, k.state]).sort()).toEqual([
      ['audit', 'ES256', 'active'],
      ['blinding', 'HS256', 'active'],
      ['enc', 'ECDH-ES', 'active'],
      ['pq-enc', 'ML-KEM-768', 'active'],
      ['pq-sig', 'ML-DSA-65', 'active'],
      ['sig', 'ES256', 'active'],
    ]);
    // The published kid is the one the CLI shows.
    const published = gw.app.keyring.jwks().keys.find((k) => k.use === 'sig')!;
    expect(json.some((k) => k.kid === published.kid)).toBe(true);
  });

  it('refuses an unknown subcommand with a usage error', async () => {
    const err = await gateway(['keys', 'rotate-everything'], {
      DATABASE_URL: gw.databaseUrl,
      LOG_LEVEL: 'silent',
    }).catch((e) => e);
    expect(err.code).not.toBe(0);
    expect(err.stderr).toMatch(/unknown keys subcommand/);
  });
});

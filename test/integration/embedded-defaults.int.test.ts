import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanEnv, exited, runCli, spawnCli, waitFor } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';
import { postmasterOf, walSegments } from '../helpers/data-dir.ts';

/**
 * The README quick start, as a user runs it: `gateway start` with no
 * configuration at all creates embedded PostgreSQL and a SoftHSM token in
 * DATA_DIR, generates keys in the token, and keeps all of it across restarts.
 */
describe('embedded defaults (README quick start)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gw-embedded-'));
  // A failed assertion must not leave a gateway (and its PostgreSQL) running after the file.
  const started: Array<ReturnType<typeof spawnCli>> = [];
  const start = (env: NodeJS.ProcessEnv) => {
    const child = spawnCli(['start'], env);
    started.push(child);
    return child;
  };
  afterAll(async () => {
    for (const child of started)
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited(child);
      }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('starts on first run, serves admin commands from a second shell, stops cleanly and restarts fast', async () => {
    const port = await freePort();
    const pgPort = await freePort();
    const env = cleanEnv({ DATA_DIR: dataDir, PORT: String(port), EMBEDDED_PG_PORT: String(pgPort) });
    delete env.EMBEDDED_PG_PROFILE;
    const ready = async () => (await fetch(`http://127.0.0.1:${port}/ready`)).status === 200;

    const first = start(env);
    try {
      const ms = await waitFor(ready, 60_000, 'first start /ready');
      expect(ms).toBeLessThan(60_000);
    } catch (err) {
      first.kill('SIGKILL');
      throw new Error(`${(err as Error).message}\n${first.output()}`);
    }
    // The dev token and its 0600 PIN file were created in DATA_DIR.
    expect(existsSync(join(dataDir, 'softhsm', 'tokens'))).toBe(true);
    expect(statSync(join(dataDir, 'softhsm', 'user-pin')).mode & 0o777).toBe(0o600);
    expect(existsSync(join(dataDir, 'pg', 'PG_VERSION'))).toBe(true);
    // The small profile by default: no WAL prepared ahead (that is the throughput profile's,
    // test/integration/embedded-coexist.int.test.ts), only the few segments a new cluster writes.
    expect(walSegments(dataDir).length).toBeLessThanOrEqual(8);
    expect(existsSync(join(dataDir, 'pg-wal-prepared'))).toBe(false);
    // It runs with small shared_buffers (bounded bursts of dirty pages; docs/decisions/0007).
    const postmaster = postmasterOf(dataDir);
    expect(postmaster.cmdline).toContain('shared_buffers=16MB');
    expect(postmaster.cmdline).toContain('max_wal_size=256MB');
    // An explicit EMBEDDED_PG_PORT keeps loopback TCP on that port.
    expect(postmaster.listenAddress).toBe('127.0.0.1');
    expect(postmaster.port).toBe(pgPort);

    // A second shell, same DATA_DIR: it finds the running PostgreSQL.
    const listed = await runCli(['keys', 'list', '--json'], env);
    expect(listed.code, listed.stderr).toBe(0);
    const keys = JSON.parse(listed.stdout) as Array<{ kid: string; use: string; state: string }>;
    expect(keys.map((k) => k.use).sort()).toEqual(['audit', 'blinding', 'enc', 'pq-enc', 'pq-sig', 'sig']);
    expect(keys.every((k) => k.state === 'active')).toBe(true);

    first.kill('SIGTERM');
    expect(await exited(first)).toBe(0);
    expect(existsSync(join(dataDir, 'pg', 'postmaster.pid'))).toBe(false); // embedded PostgreSQL stopped too

    const second = start(env);
    try {
      expect(await waitFor(ready, 10_000, 'restart /ready')).toBeLessThan(10_000);
      const jwks = (await (await fetch(`http://127.0.0.1:${port}/.well-known/jwks.json`)).json()) as {
        keys: Array<{ kid: string }>;
      };
      // Same keys after the restart: nothing regenerated (the audit and blinding keys are not published).
      expect(jwks.keys.map((k) => k.kid).sort()).toEqual(
        keys
          .filter((k) => ['sig', 'enc', 'pq-sig', 'pq-enc'].includes(k.use))
          .map((k) => k.kid)
          .sort(),
      );
    } finally {
      second.kill('SIGTERM');
      expect(await exited(second)).toBe(0);
    }
  });
});

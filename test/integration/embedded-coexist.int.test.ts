import { afterAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { cleanEnv, exited, runCli, spawnCli, waitFor } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';
import { diskBytes, postmasterOf, walSegments } from '../helpers/data-dir.ts';

/** A fresh shell with no database settings at all: no EMBEDDED_PG_PORT, no profile, no DATABASE_URL. */
function shellEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = cleanEnv(extra);
  for (const k of ['EMBEDDED_PG_PORT', 'EMBEDDED_PG_PROFILE'] as const) if (!(k in extra)) delete env[k];
  return env;
}

const MB = 1024 * 1024;

describe('two gateways on one machine, with no port settings', () => {
  const root = mkdtempSync(join(tmpdir(), 'gw-coexist-'));
  chmodSync(root, 0o755); // the postgres OS user walks through it to the data dirs when we run as root
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('both start, each admin command reaches its own database, and the default first start stays light', async () => {
    const dirA = join(root, 'a');
    // Too long for a Unix socket path (sun_path): B falls back to a free loopback port.
    const dirB = join(root, `b-${'long-path-'.repeat(9)}`);
    expect(join(dirB, 'run', '.s.PGSQL.5432').length).toBeGreaterThan(107);
    const portA = await freePort();
    const portB = await freePort();
    const envA = shellEnv({ DATA_DIR: dirA, PORT: String(portA) });
    const envB = shellEnv({ DATA_DIR: dirB, PORT: String(portB), EMBEDDED_PG_PROFILE: 'throughput' });
    const ready = (port: number) => async () => (await fetch(`http://127.0.0.1:${port}/ready`)).status === 200;

    const a = spawnCli(['start'], envA);
    const b = spawnCli(['start'], envB);
    try {
      await Promise.all([
        waitFor(ready(portA), 90_000, 'gateway A /ready').catch((err: Error) => {
          throw new Error(`${err.message}\n${a.output()}`);
        }),
        waitFor(ready(portB), 120_000, 'gateway B /ready').catch((err: Error) => {
          throw new Error(`${err.message}\n${b.output()}`);
        }),
      ]);

      // A: a socket in its DATA_DIR, nothing on the network, and a small WAL.
      const pmA = postmasterOf(dirA);
      expect(pmA.listenAddress).toBe('');
      expect(pmA.socketDir).toBe(join(dirA, 'run'));
      expect(existsSync(join(dirA, 'run', `.s.PGSQL.${pmA.port}`))).toBe(true);
      expect(pmA.cmdline).toContain('max_wal_size=256MB');
      expect(pmA.cmdline).toContain('shared_buffers=16MB'); // bounded bursts of dirty pages (docs/decisions/0007)
      expect(diskBytes(dirA)).toBeLessThan(300 * MB);

      // B: loopback TCP on a port it chose, and the throughput profile's prepared WAL: dozens of recycled
      // segments (max_wal_size of 16 MiB segments), not the few initdb leaves.
      const pmB = postmasterOf(dirB);
      expect(pmB.listenAddress).toBe('127.0.0.1');
      expect(pmB.port).not.toBe(pmA.port);
      expect(pmB.cmdline).toContain('max_wal_size=2048MB');
      expect(walSegments(dirB).length).toBeGreaterThanOrEqual(128);

      // A client registered through A's CLI is in A's database only.
      const jwk = await exportJWK((await generateKeyPair('ES256', { extractable: true })).publicKey);
      const jwksFile = join(root, 'ehr.jwks.json');
      writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...jwk, kid: 'k1', alg: 'ES256', use: 'sig' }] }));
      const added = await runCli(
        ['clients', 'add', '--id', 'only-on-a', '--jwks-file', jwksFile, '--scope', 'system/Bundle.write'],
        envA,
      );
      expect(added.code, added.stderr).toBe(0);
      const listed = async (env: NodeJS.ProcessEnv) => {
        const r = await runCli(['clients', 'list', '--json'], env);
        expect(r.code, r.stderr).toBe(0);
        return (JSON.parse(r.stdout) as Array<{ id: string }>).map((c) => c.id);
      };
      expect(await listed(envA)).toContain('only-on-a');
      expect(await listed(envB)).not.toContain('only-on-a');

      // A postmaster killed on its socket is restarted on the same socket (src/db/supervisor.ts).
      process.kill(pmA.pid, 'SIGKILL');
      await waitFor(async () => postmasterOf(dirA).pid !== pmA.pid && (await ready(portA)()), 30_000, 'A restarted');
      expect(postmasterOf(dirA).socketDir).toBe(join(dirA, 'run'));
      expect(await listed(envA)).toContain('only-on-a');
    } finally {
      a.kill('SIGTERM');
      b.kill('SIGTERM');
      expect(await exited(a)).toBe(0);
      expect(await exited(b)).toBe(0);
    }
    expect(existsSync(join(dirA, 'pg', 'postmaster.pid'))).toBe(false);
    expect(existsSync(join(dirB, 'pg', 'postmaster.pid'))).toBe(false);
  });
});

describe('an embedded PostgreSQL that cannot start says why and what to do', () => {
  const root = mkdtempSync(join(tmpdir(), 'gw-pg-fail-'));
  chmodSync(root, 0o755);
  let occupier: Server | undefined;
  afterAll(() => {
    occupier?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('an explicit EMBEDDED_PG_PORT that another program holds', async () => {
    const port = await freePort();
    occupier = createServer();
    await new Promise<void>((resolve) => occupier!.listen(port, '127.0.0.1', resolve));
    const r = await runCli(
      ['clients', 'list'],
      shellEnv({ DATA_DIR: join(root, 'port'), EMBEDDED_PG_PORT: String(port) }),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`loopback port ${port} (EMBEDDED_PG_PORT) is in use`);
    expect(r.stderr).toContain('unset EMBEDDED_PG_PORT to use a Unix socket in DATA_DIR');
    expect(r.stderr).not.toMatch(/Cannot read properties|undefined/);
  });

  it('a socket directory that cannot be created', async () => {
    const dataDir = join(root, 'blocked');
    mkdirSync(dataDir);
    writeFileSync(join(dataDir, 'run'), 'not a directory');
    const r = await runCli(['clients', 'list'], shellEnv({ DATA_DIR: dataDir }));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`embedded PostgreSQL cannot use ${join(dataDir, 'run')}`);
    expect(r.stderr).toContain('something that is not a directory is in the way');
    expect(r.stderr).not.toMatch(/Cannot read properties|undefined/);
  });
});

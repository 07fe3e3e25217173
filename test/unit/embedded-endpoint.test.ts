import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import {
  chooseEndpoint,
  endpointUrl,
  listenFlags,
  runningEndpoint,
  socketPathFits,
} from '../../src/db/embedded-endpoint.ts';
import { explainStartFailure } from '../../src/db/embedded-failure.ts';

/** What node-postgres (and graphile-worker, through its pool) connects to for a URL. */
const parse = (connectionString: string) => {
  const p = (new pg.Client({ connectionString }) as unknown as { connectionParameters: Record<string, unknown> })
    .connectionParameters;
  return { host: p.host, port: p.port, database: p.database, user: p.user, password: p.password };
};

describe('embedded PostgreSQL endpoint', () => {
  it('a socket in DATA_DIR/run unless EMBEDDED_PG_PORT is set or the socket path is too long', async () => {
    expect(await chooseEndpoint('/srv/gw', undefined)).toEqual({ kind: 'socket', dir: '/srv/gw/run', port: 5432 });
    expect(await chooseEndpoint('/srv/gw', 54329)).toEqual({ kind: 'tcp', port: 54329, explicit: true });
    const long = `/${'d'.repeat(100)}`;
    const fallback = await chooseEndpoint(long, undefined);
    expect(fallback).toMatchObject({ kind: 'tcp', explicit: false });
    expect(fallback.port).toBeGreaterThan(0);
  });

  it('sun_path holds 107 bytes of path', () => {
    const dir = (n: number) => `/${'x'.repeat(n - '/'.length - '/.s.PGSQL.5432'.length)}`;
    expect(socketPathFits(dir(107))).toBe(true);
    expect(socketPathFits(dir(108))).toBe(false);
  });

  it('node-postgres reads the socket directory from the URL, with a password that needs escaping', () => {
    const url = endpointUrl(
      'gateway',
      'p@ss/w:rd',
      { kind: 'socket', dir: '/var/lib/gw data/run', port: 5432 },
      'gateway',
    );
    expect(parse(url)).toMatchObject({
      host: '/var/lib/gw data/run',
      port: 5432,
      database: 'gateway',
      user: 'gateway',
      password: 'p@ss/w:rd',
    });
    expect(parse(endpointUrl('u', 'p', { kind: 'tcp', port: 4242, explicit: true }, 'db'))).toMatchObject({
      host: '127.0.0.1',
      port: 4242,
    });
  });

  it('the socket endpoint listens on no network address', () => {
    expect(listenFlags({ kind: 'socket', dir: '/d/run', port: 5432 })).toEqual([
      '-c',
      'listen_addresses=',
      '-c',
      'unix_socket_directories=/d/run',
    ]);
  });

  it('a running server is found from its postmaster.pid', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-pidfile-'));
    try {
      const file = join(dir, 'postmaster.pid');
      writeFileSync(file, `123\n${dir}\n1700000000\n5432\n/srv/gw/run\n\n  1 2\nready   \n`);
      expect(runningEndpoint(file)).toEqual({ kind: 'socket', dir: '/srv/gw/run', port: 5432 });
      writeFileSync(file, `123\n${dir}\n1700000000\n54329\n/tmp\n127.0.0.1\n  1 2\nready   \n`);
      expect(runningEndpoint(file)).toEqual({ kind: 'tcp', port: 54329, explicit: false });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('start failures of the embedded PostgreSQL', () => {
  const tcp = { kind: 'tcp', port: 54329, explicit: true } as const;
  it.each([
    [
      'LOG:  could not bind IPv4 address "127.0.0.1": Address already in use',
      'loopback port 54329 (EMBEDDED_PG_PORT) is in use',
    ],
    [
      'FATAL:  lock file "/tmp/.s.PGSQL.54329.lock" already exists',
      'belongs to another PostgreSQL server; stop it, or use another DATA_DIR',
    ],
    [
      'FATAL:  Unix-domain socket path "/x/.s.PGSQL.5432" is too long',
      'use a shorter DATA_DIR or set EMBEDDED_PG_PORT',
    ],
    ['FATAL:  could not create lock file "/d/run/.s.PGSQL.5432.lock": Permission denied', 'cannot write to /d'],
    ['FATAL:  something new', 'it exited while starting: something new'],
  ])('%s', (log, expected) => {
    const err = explainStartFailure(log, tcp, '/d');
    expect(err.message).toContain('embedded PostgreSQL in /d/pg did not start: ');
    expect(err.message).toContain(expected);
  });
});

import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';

/**
 * A PostgreSQL server of its own, from Debian's `postgresql` package (not
 * the npm binaries the embedded server uses): what DATABASE_URL points at in
 * a deployment with a separate database. It can be stopped and started
 * again like an operator would, with pg_ctl.
 *
 * PostgreSQL refuses to run as root. When the tests run as root, initdb and
 * pg_ctl run as the `postgres` OS user (which the package creates), through
 * runuser, and the cluster directory belongs to that user.
 */
export interface PgCluster {
  url: string;
  port: number;
  /** pg_ctl stop -m fast: sessions are ended (57P01), then a shutdown checkpoint. */
  stop(): Promise<void>;
  /** pg_ctl start, waiting until it accepts connections. */
  start(): Promise<void>;
  /** pg_ctl stop -m immediate: the server's processes quit at once, as in a crash or a lost machine. */
  kill(): Promise<void>;
  /** pg_ctl promote, waiting until the standby accepts writes. */
  promote(): Promise<void>;
  /** A streaming hot standby of this server (pg_basebackup -R), started. */
  standby(): Promise<PgCluster>;
  /** Stop for good (the directory goes with the run's TMPDIR). */
  destroy(): Promise<void>;
}

export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'pg_ctl')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

const asRoot = process.getuid?.() === 0;

function pgUserIds(): { uid: number; gid: number } {
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  };
}

const run = promisify(execFile);

/** Run a PostgreSQL tool, as the postgres OS user when we are root; not blocking the test's event loop. */
async function tool(bin: string, name: string, args: string[]): Promise<void> {
  const [cmd, argv] = asRoot
    ? ['runuser', ['-u', 'postgres', '--', join(bin, name), ...args]]
    : [join(bin, name), args];
  await run(cmd, argv, { timeout: 60_000 });
}

/**
 * A server of its own; `settings` are extra `-c name=value` options (e.g.
 * synchronous_standby_names for synchronous replication).
 */
export async function startPgCluster(settings: Record<string, string> = {}): Promise<PgCluster> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('no PostgreSQL server binaries in /usr/lib/postgresql: run `npm run setup:test`');
  const dir = clusterDir();
  const password = 'cluster-test';
  const pwfile = join(dir, 'pw');
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (asRoot) {
    const { uid, gid } = pgUserIds();
    chownSync(pwfile, uid, gid);
  }
  const data = join(dir, 'data');
  await tool(bin, 'initdb', ['-D', data, '-U', 'gateway', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8']);
  return serve(bin, dir, password, settings);
}

/** A directory the postgres OS user owns, with a socket directory in it. */
function clusterDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'gw-pg-cluster-'));
  mkdirSync(join(dir, 'sock'));
  if (asRoot) {
    chmodSync(dir, 0o755); // the postgres user walks into it
    const { uid, gid } = pgUserIds();
    for (const p of [dir, join(dir, 'sock')]) chownSync(p, uid, gid);
  }
  return dir;
}

async function serve(bin: string, dir: string, password: string, settings: Record<string, string>): Promise<PgCluster> {
  const data = join(dir, 'data');
  const port = await freePort();
  const log = join(dir, 'server.log');
  const extra = Object.entries(settings)
    .map(([k, v]) => ` -c ${k}=${v}`)
    .join('');
  const options = `-p ${port} -k ${join(dir, 'sock')} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off${extra}`;
  const start = () => tool(bin, 'pg_ctl', ['-D', data, '-l', log, '-o', options, '-w', '-t', '30', 'start']);
  const stop = (mode: 'fast' | 'immediate') => tool(bin, 'pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '30', 'stop']);
  await start();
  let running = true;
  const url = `postgres://gateway:${password}@127.0.0.1:${port}/postgres`;
  return {
    url,
    port,
    start: async () => {
      await start();
      running = true;
    },
    stop: async () => {
      await stop('fast');
      running = false;
    },
    kill: async () => {
      await stop('immediate');
      running = false;
    },
    promote: () => tool(bin, 'pg_ctl', ['-D', data, '-w', '-t', '30', 'promote']),
    standby: async () => {
      const standbyDir = clusterDir();
      // -R writes primary_conninfo and standby.signal: the copy starts as a streaming hot standby.
      await tool(bin, 'pg_basebackup', ['-d', url, '-D', join(standbyDir, 'data'), '-R', '-X', 'stream', '-c', 'fast']);
      return serve(bin, standbyDir, password, {});
    },
    destroy: async () => {
      if (running) await stop('fast');
      running = false;
    },
  };
}

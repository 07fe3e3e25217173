import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * The first port the kernel hands out for outgoing connections. A port from
 * below it cannot be taken by one of our own outgoing connections (to
 * PostgreSQL, to a peer) between the moment we pick it and the moment a
 * gateway listens on it, which a port from `listen(0)` can.
 */
function ephemeralStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > 11_000 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

const LOW = 10_000;

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A TCP port on loopback that was free a moment ago, outside the range of outgoing connections and not in `taken`. */
export async function freeLoopbackPort(taken: ReadonlySet<number> = new Set()): Promise<number> {
  const high = ephemeralStart();
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = LOW + Math.floor(Math.random() * (high - LOW));
    if (!taken.has(port) && (await isFree(port))) return port;
  }
  throw new Error(`no free loopback port between ${LOW} and ${high}`);
}

import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export interface GatewayPorts {
  /** PORT: the gateway's HTTP listener. */
  http: number;
}

/**
 * The two listeners need a port each. Their embedded PostgreSQL servers need none: each listens on a
 * Unix socket in its own DATA_DIR (src/db/embedded-endpoint.ts).
 */
export async function demoPorts(): Promise<{ a: GatewayPorts; b: GatewayPorts }> {
  const taken = new Set<number>();
  const next = async () => {
    const port = await freePort(taken);
    taken.add(port);
    return port;
  };
  return {
    a: { http: await next() },
    b: { http: await next() },
  };
}

/** Ports from below the range the kernel gives outgoing connections, so none of ours takes one meanwhile. */
function ephemeralStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > 11_000 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function freePort(taken: Set<number>): Promise<number> {
  const low = 10_000;
  const high = ephemeralStart();
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (!taken.has(port) && (await isFree(port))) return port;
  }
  throw new Error(`no free loopback port between ${low} and ${high}`);
}

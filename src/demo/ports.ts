import { freeLoopbackPort } from '../net/free-port.ts';

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
    const port = await freeLoopbackPort(taken);
    taken.add(port);
    return port;
  };
  return {
    a: { http: await next() },
    b: { http: await next() },
  };
}

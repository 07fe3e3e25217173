import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createTestDatabase } from '../helpers/db.ts';
import { createPool, endPool } from '../../src/db/pool.ts';

/**
 * A primary lost while a new connection checks that it is read-write: the
 * check fails and the pool answers an error, but the process must not die of
 * the connection's 'error' event, which comes before the pool listens for it.
 * A proxy in front of the real server cuts the connection the moment the
 * second read-write check is sent (the first is the primary probe's).
 */
function cuttingProxy(target: { host: string; port: number }, cutAt: number): Promise<Server & { checks: number }> {
  const server = createServer((client: Socket) => {
    const upstream = connect(target.port, target.host);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.pipe(client);
    client.on('data', (chunk: Buffer) => {
      if (chunk.includes('transaction_read_only') && ++proxy.checks === cutAt) {
        client.destroy();
        upstream.destroy();
        return;
      }
      upstream.write(chunk);
    });
    client.on('close', () => upstream.destroy());
  }) as Server & { checks: number };
  const proxy = server;
  proxy.checks = 0;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(proxy)));
}

describe('a multi-host pool whose primary drops during the read-write check', () => {
  let url: URL;
  let proxy: Server & { checks: number };
  beforeAll(async () => {
    url = new URL(await createTestDatabase());
    proxy = await cuttingProxy({ host: url.hostname, port: Number(url.port) }, 2);
  });
  afterAll(() => new Promise<void>((r) => proxy.close(() => r())));

  it('answers an error for that connection, stays up, and connects again', async () => {
    const { port } = proxy.address() as AddressInfo;
    // The proxy first, then a host nobody listens on: only the proxy can be the primary.
    const multi = `postgres://${url.username}:${url.password}@127.0.0.1:${port},127.0.0.1:1${url.pathname}?target_session_attrs=read-write`;
    const warnings: string[] = [];
    const pool = createPool(multi, { warn: (_o, msg) => warnings.push(msg) });
    try {
      await expect(pool.query('SELECT 1')).rejects.toThrow();
      expect(proxy.checks).toBe(2);
      // The next connection probes afresh and succeeds through the same proxy.
      const { rows } = await pool.query<{ one: number }>('SELECT 1 AS one');
      expect(rows).toEqual([{ one: 1 }]);
    } finally {
      await endPool(pool);
    }
  });
});

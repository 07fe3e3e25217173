/**
 * Which errors mean "the database is unavailable" (503, retry later) and
 * which are a query's own fault (500): each case is a real error from
 * node-postgres against a real server (or a real closed port), not a
 * hand-made object.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:net';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { createTestDatabase } from '../helpers/db.ts';
import { freePort } from '../helpers/ports.ts';
import { isDatabaseUnavailable } from '../../src/db/unavailable.ts';
import { toErrorReply } from '../../plugins/error-reply.ts';

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a failure');
    },
    (err: unknown) => err,
  );

function quietPool(connectionString: string, extra: pg.PoolConfig = {}): pg.Pool {
  const pool = new pg.Pool({ connectionString, connectionTimeoutMillis: 2_000, ...extra });
  pool.on('error', () => undefined);
  pool.on('connect', (c) => c.on('error', () => undefined));
  return pool;
}

describe('database-unavailable classification', () => {
  let url: string;
  let pool: pg.Pool;
  beforeAll(async () => {
    url = await createTestDatabase();
    pool = quietPool(url);
  });
  afterAll(async () => pool?.end());

  function expect503(err: unknown) {
    expect(isDatabaseUnavailable(err)).toBe(true);
    const reply = toErrorReply(err, 'req-db');
    expect(reply.status).toBe(503);
    expect(reply.retryAfter).toBe(5);
    expect(reply.outcome.issue[0]).toMatchObject({
      code: 'transient',
      details: { coding: [{ code: 'UNAVAILABLE' }] },
      diagnostics: 'the database is unavailable; retry later',
    });
  }

  it('a refused connection (nothing listens on the port), by address and by a name with several addresses', async () => {
    const port = await freePort();
    for (const host of ['127.0.0.1', 'localhost']) {
      const p = quietPool(`postgres://u:p@${host}:${port}/db`);
      expect503(await failure(p.query('SELECT 1')));
      await p.end();
    }
  });

  it('a session ended by the server (57P01 admin_shutdown, as in a fast shutdown)', async () => {
    const client = await pool.connect();
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    await pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    const err = await failure(client.query('SELECT 1'));
    client.release(true);
    expect503(err);
  });

  it('the pool finds no connection in time', async () => {
    const small = quietPool(url, { max: 1, connectionTimeoutMillis: 200 });
    const held = await small.connect();
    const err = await failure(small.connect());
    expect((err as Error).message).toBe('timeout exceeded when trying to connect');
    expect503(err);
    held.release();
    await small.end();
  });

  it('a connection the server side drops before answering', async () => {
    const port = await freePort();
    const server: Server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const p = quietPool(`postgres://u:p@127.0.0.1:${port}/db`);
    const err = await failure(p.query('SELECT 1'));
    expect((err as Error).message).toMatch(/^Connection terminated/);
    expect503(err);
    await p.end();
    await new Promise((resolve) => server.close(resolve));
  });

  it('is not fooled by errors of a query, of the disk or of an HTTP peer', async () => {
    const sqlErrors = [
      await failure(pool.query('SELEC 1')), // 42601 syntax
      await failure(pool.query("SELECT 'x'::uuid")), // 22P02 invalid text
      await failure(pool.query('SELECT 1/0')), // 22012 division by zero
    ];
    for (const err of sqlErrors) {
      expect(isDatabaseUnavailable(err)).toBe(false);
      expect(toErrorReply(err, 'r').status).toBe(500);
    }
    let enoent: unknown;
    try {
      readFileSync('/nonexistent/file');
    } catch (err) {
      enoent = err;
    }
    expect(isDatabaseUnavailable(enoent)).toBe(false);
    // fetch to a closed port: ECONNREFUSED, but in `cause`, and a peer's outage is not the database's.
    const fetchErr = await failure(fetch(`http://127.0.0.1:${await freePort()}/`));
    expect((fetchErr as { cause?: { code?: string } }).cause?.code).toBe('ECONNREFUSED');
    expect(isDatabaseUnavailable(fetchErr)).toBe(false);
    expect(isDatabaseUnavailable(undefined)).toBe(false);
    expect(isDatabaseUnavailable('ECONNREFUSED')).toBe(false);
  });
});

import type { FastifyInstance, InjectOptions } from 'fastify';
import { expect } from 'vitest';

/**
 * In-process HTTP for the fuzz properties (app.inject: no sockets, so
 * hundreds of requests stay cheap on a loaded machine).
 */
export interface Answer {
  statusCode: number;
  body: string;
  headers: Record<string, unknown>;
}

export async function send(app: FastifyInstance, options: InjectOptions): Promise<Answer> {
  const res = await app.inject(options);
  return { statusCode: res.statusCode, body: res.body, headers: res.headers };
}

/** Percent-encode every byte: any text (lone surrogates included) or raw bytes (invalid UTF-8 included). */
export function pct(value: string | Buffer): string {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  return [...bytes].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
}

/** A query string from name/value pairs, each percent-encoded. */
export function queryString(pairs: Array<[string, string]>): string {
  return pairs.length ? `?${pairs.map(([k, v]) => `${pct(k)}=${pct(v)}`).join('&')}` : '';
}

/** The gateway is still ready after a fuzz run: database, HSM and queue answer. */
export async function expectReady(app: FastifyInstance): Promise<void> {
  const res = await app.inject({ method: 'GET', url: '/ready' });
  expect(res.statusCode, res.body).toBe(200);
}

/** Count of audit entries of one type (refusals are checked against the 4xx answers). */
export async function auditCount(app: FastifyInstance, type: string): Promise<number> {
  const { rows } = await app.ctx.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log WHERE type = $1', [
    type,
  ]);
  return rows[0]!.n;
}

/** What can stand in a header value on the wire (tab, visible ASCII, obs-text): Node refuses to send anything else. */
export const headerSafe = (value: string) => value.replace(/[^\t\x20-\x7e\x80-\xff]/g, '');

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { createTestDatabase } from '../helpers/db.ts';
import { Directory } from '../../src/directory/directory.ts';
import { GatewayError } from '../../src/errors.ts';

/**
 * Inbound verification reads the sender's directory entry and the log's
 * records of its kid for every message: a process reads each at most once
 * per second, sees its own changes at once, and another process's within
 * that second.
 */
const logger = { warn: () => {} };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function ecKey(use: 'sig' | 'enc'): Promise<JWK & { kid: string }> {
  const { publicKey } = await generateKeyPair(use === 'sig' ? 'ES256' : 'ECDH-ES', { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { ...jwk, kid: await calculateJwkThumbprint(jwk), use, alg: use === 'sig' ? 'ES256' : 'ECDH-ES' };
}

describe('directory reads of inbound verification', () => {
  let pool: pg.Pool;
  let other: pg.Pool;
  const statements: string[] = [];
  const id = 'https://sender.test';

  beforeAll(async () => {
    const url = await createTestDatabase();
    pool = new pg.Pool({ connectionString: url, max: 2 });
    other = new pg.Pool({ connectionString: url, max: 1 });
    const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
    pool.query = ((...args: unknown[]) => {
      const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text: string }).text;
      statements.push(text);
      return query(...args);
    }) as typeof pool.query;
  });
  afterAll(async () => {
    await pool?.end();
    await other?.end();
  });

  const reads = (table: string) => statements.filter((s) => new RegExp(`FROM ${table} WHERE`).test(s)).length;

  it('reads the sender and its key records once within the second, then again', async () => {
    const dir = new Directory({ pool, fetch: globalThis.fetch, logger });
    const sig = await ecKey('sig');
    await dir.add({ id, endpoint: 'https://sender.test/inbox', jwks: { keys: [await ecKey('enc'), sig] } });
    statements.length = 0;
    for (let i = 0; i < 5; i++) {
      const sender = await dir.sender(id);
      expect(sender?.status).toBe('active');
      expect((await dir.verificationKey(sender!, sig.kid, 'current')).kid).toBe(sig.kid);
    }
    expect([reads('partners'), reads('partner_keys_seen')]).toEqual([1, 1]);

    await sleep(1_100);
    await dir.verificationKey((await dir.sender(id))!, sig.kid, 'current');
    expect([reads('partners'), reads('partner_keys_seen')]).toEqual([2, 2]);
  });

  it("applies another process's suspension and key withdrawal within the second, its own changes at once", async () => {
    const dir = new Directory({ pool, fetch: globalThis.fetch, logger });
    const sig = await ecKey('sig');
    const enc = await ecKey('enc');
    const otherId = 'https://other.test';
    await dir.add({ id: otherId, endpoint: 'https://other.test/inbox', jwks: { keys: [enc, sig] } });
    expect((await dir.sender(otherId))?.status).toBe('active');
    await dir.verificationKey(otherId, sig.kid, 'current');

    // Another process (the CLI) suspends the partner and records the key as withdrawn.
    await other.query(`UPDATE partners SET status = 'suspended' WHERE id = $1`, [otherId]);
    await other.query(`UPDATE partner_keys_seen SET disappeared_at = now() WHERE partner_id = $1 AND kid = $2`, [
      otherId,
      sig.kid,
    ]);
    await sleep(1_100);
    expect((await dir.sender(otherId))?.status).toBe('suspended');
    const withdrawn = await dir.verificationKey(otherId, sig.kid, 'current').catch((e: unknown) => e);
    expect((withdrawn as GatewayError).code).toBe('JWS_KEY_WITHDRAWN');

    // This process's own changes: seen by the next read, though the cached answers are younger than a second.
    const sig2 = await ecKey('sig');
    const endpoint = 'https://other.test/inbox';
    await dir.update({ id: otherId, endpoint, jwks: { keys: [enc, sig2] }, status: 'active' });
    expect((await dir.sender(otherId))?.status).toBe('active');
    expect((await dir.verificationKey(otherId, sig2.kid, 'current')).kid).toBe(sig2.kid);
    await dir.update({ id: otherId, endpoint, jwks: { keys: [enc, sig2] }, status: 'suspended' });
    expect((await dir.sender(otherId))?.status).toBe('suspended');

    // The kid refused as withdrawn a moment ago, listed again by this process: its records are read anew.
    await dir.update({ id: otherId, endpoint, jwks: { keys: [enc, sig] }, status: 'active' });
    expect((await dir.verificationKey(otherId, sig.kid, 'current')).kid).toBe(sig.kid);
  });
});

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { SignJWT, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient } from '../helpers/auth.ts';
import { registerClient } from '../../src/auth/clients.ts';
import { ASSERTION_TYPE } from '../../src/auth/token-endpoint.ts';
import { SCOPE_ALL_READ, SCOPE_BUNDLE_WRITE } from '../../plugins/guard.ts';

describe('client keys: jwks_uri, RS384, ES384; token endpoint rate limit', () => {
  let gw: TestGateway;
  let jwksServer: Server;
  let published: { keys: JWK[] } = { keys: [] };
  let fetches = 0;

  const sign = (id: string, alg: string, kid: string, key: CryptoKey) =>
    new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg, kid })
      .setIssuer(id)
      .setSubject(id)
      .setAudience(`${gw.config.baseUrl}/auth/token`)
      .setExpirationTime('3m')
      .sign(key);
  const grant = (assertion: string, scope = SCOPE_BUNDLE_WRITE) =>
    request(gw.app.server).post('/auth/token').type('form').send({
      grant_type: 'client_credentials',
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: assertion,
      scope,
    });

  beforeAll(async () => {
    jwksServer = createServer((req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(published));
    });
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
    gw = await startTestGateway({ JWKS_REFRESH_COOLDOWN: '0ms' });
  });
  afterAll(async () => {
    await gw?.close();
    jwksServer?.close();
  });

  it('fetches a jwks_uri, and refetches it when the client rotates to a new kid', async () => {
    const k1 = await generateKeyPair('ES256');
    published = { keys: [{ ...(await exportJWK(k1.publicKey)), kid: 'r1' }] };
    const uri = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
    await registerClient(gw.app.ctx.pool, { id: 'ehr-uri', jwksUri: uri, scopes: [SCOPE_BUNDLE_WRITE] });
    expect((await grant(await sign('ehr-uri', 'ES256', 'r1', k1.privateKey))).status).toBe(200);
    const before = fetches;
    expect((await grant(await sign('ehr-uri', 'ES256', 'r1', k1.privateKey))).status).toBe(200);
    expect(fetches).toBe(before); // cached
    const k2 = await generateKeyPair('ES256');
    published = { keys: [...published.keys, { ...(await exportJWK(k2.publicKey)), kid: 'r2' }] };
    expect((await grant(await sign('ehr-uri', 'ES256', 'r2', k2.privateKey))).status).toBe(200);
    expect(fetches).toBe(before + 1);
  });

  it('accepts RS384 and ES384 assertions; refuses RS256 and a kid registered for another alg', async () => {
    const rsa = await generateKeyPair('RS384', { modulusLength: 2048, extractable: true });
    const ec = await generateKeyPair('ES384');
    await registerClient(gw.app.ctx.pool, {
      id: 'ehr-multi',
      scopes: [SCOPE_ALL_READ],
      jwks: {
        keys: [
          { ...(await exportJWK(rsa.publicKey)), kid: 'rsa', alg: 'RS384' },
          { ...(await exportJWK(ec.publicKey)), kid: 'ec' },
        ],
      },
    });
    expect((await grant(await sign('ehr-multi', 'RS384', 'rsa', rsa.privateKey), SCOPE_ALL_READ)).status).toBe(200);
    expect((await grant(await sign('ehr-multi', 'ES384', 'ec', ec.privateKey), SCOPE_ALL_READ)).status).toBe(200);
    const rs256 = await new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: 'RS256', kid: 'rsa' })
      .setIssuer('ehr-multi')
      .setSubject('ehr-multi')
      .setAudience(`${gw.config.baseUrl}/auth/token`)
      .setExpirationTime('3m')
      .sign(await importJWK(await exportJWK(rsa.privateKey), 'RS256'));
    const res = await grant(rs256, SCOPE_ALL_READ);
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_client');
    const es = await generateKeyPair('ES256');
    const mismatch = await grant(await sign('ehr-multi', 'ES256', 'rsa', es.privateKey), SCOPE_ALL_READ);
    expect(mismatch.status).toBe(401);
    const { rows } = await gw.app.ctx.pool.query(`SELECT entry FROM audit_log WHERE type = 'auth.failure'`);
    expect(rows.map((r) => JSON.parse(r.entry).detail.reason)).toEqual(
      expect.arrayContaining(['alg_not_allowed', 'alg_mismatch']),
    );
  });

  it('rate-limits token requests per client with 429 and Retry-After', async () => {
    const c = await testClient(gw, { scopes: [SCOPE_BUNDLE_WRITE], rateLimit: 2 });
    await c.token();
    await c.token();
    const res = await grant(await c.assertion());
    expect(res.status).toBe(429);
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(res.body.error).toBe('slow_down');
  });
});

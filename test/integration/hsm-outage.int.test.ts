/**
 * The HSM goes away while the gateway runs, then comes back.
 *
 * What is simulated, honestly: the SoftHSM token is served by a separate
 * process, `p11-kit server`, over a Unix socket, and the gateway loads
 * p11-kit-client.so as its PKCS#11 module, exactly as it would load a network
 * HSM's client library. The outage is a SIGKILL of that server process group
 * (the device and its connection vanish; the client answers CKR_DEVICE_ERROR
 * and then finds no token); recovery is a new server on the same socket.
 * Nothing in the gateway is stubbed: the pool, the signer, the keyring, the
 * error mapping and the HTTP edge are the production ones. Two edges are
 * checked: the real intake (POST /fhir/$process-message, which signs and
 * seals) and a test-only admin route that returns the JWS it signs, so the
 * output itself can be checked: a valid signature or a 503, nothing else.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import request from 'supertest';
import { compactVerify, importJWK, type JWK } from 'jose';
import { createTestToken, type TestToken } from '../helpers/hsm.ts';
import { p11KitGatewayConfig, p11KitServer, type P11KitServer } from '../helpers/p11-kit.ts';
import { buildApp } from '../../plugins/app.ts';
import { signCompact } from '../../src/jose/jws.ts';
import { HsmError } from '../../hsm/hsm.ts';
import { requireScope, SCOPE_ADMIN, SCOPE_BUNDLE_WRITE } from '../../plugins/guard.ts';
import { testClient } from '../helpers/auth.ts';
import { startTestRecipient, type TestRecipient } from '../helpers/recipient.ts';
import { messageBundle } from '../helpers/outbound.ts';
import type { TestGateway } from '../helpers/gateway.ts';

let server: P11KitServer;

describe('HSM unavailable during operation', () => {
  let token: TestToken;
  let app: FastifyInstance;
  let sigKey: JWK;
  let adminAuth: string;
  let ehrAuth: string;
  let recipient: TestRecipient;

  const signOverHttp = () =>
    request(app.server)
      .post('/test/sign')
      .set('authorization', adminAuth)
      .set('content-type', 'text/plain')
      .send('payload to sign');
  const intake = () =>
    request(app.server)
      .post('/fhir/$process-message')
      .set('authorization', ehrAuth)
      .type('application/fhir+json')
      .send(messageBundle([recipient.id]));
  const exchangeRows = async () =>
    Number((await app.ctx.pool.query<{ n: string }>('SELECT count(*) AS n FROM exchanges')).rows[0]!.n);
  async function expectValidJws(jws: string) {
    const { payload } = await compactVerify(jws, await importJWK(sigKey, 'ES256'), { algorithms: ['ES256'] });
    expect(Buffer.from(payload).toString()).toBe('payload to sign');
  }

  beforeAll(async () => {
    token = createTestToken();
    server = p11KitServer(token);
    await server.start();
    process.env.P11_KIT_SERVER_ADDRESS = server.address;
    const config = await p11KitGatewayConfig(token, { LOG_LEVEL: 'silent' });
    app = await buildApp(config, { logger: false });
    // Test-only route: sign the body with the gateway signing key and return the JWS.
    app.post('/test/sign', { preHandler: requireScope(app.ctx, SCOPE_ADMIN) }, async (req, reply) => {
      const jws = await signCompact(app.keyring.signer('sig'), String(req.body));
      return reply.type('application/jose').send(jws);
    });
    await app.ready();
    const jwks = (await request(app.server).get('/.well-known/jwks.json').expect(200)).body;
    sigKey = jwks.keys.find((k: { use: string }) => k.use === 'sig');
    const gw = { app, config, url: config.baseUrl } as unknown as TestGateway;
    adminAuth = await (await testClient(gw, { scopes: [SCOPE_ADMIN] })).bearer();
    ehrAuth = await (await testClient(gw, { scopes: [SCOPE_BUNDLE_WRITE] })).bearer();
    recipient = await startTestRecipient({
      senderId: config.org,
      senderJwks: async () => app.ctx.keyring.jwks() as unknown as { keys: JWK[] },
    });
    await request(app.server)
      .post('/admin/partners')
      .set('authorization', adminAuth)
      .send({ id: recipient.id, name: 'partner', endpoint: recipient.inbox, jwks_uri: recipient.jwksUri })
      .expect(201);
  });
  afterAll(async () => {
    await app?.close();
    await recipient?.close();
    await server.kill();
    delete process.env.P11_KIT_SERVER_ADDRESS;
  });

  it('signs through the remote HSM while it is up', async () => {
    const res = await signOverHttp().expect(200);
    await expectValidJws(res.text);
    await intake().expect(202);
    await request(app.server).get('/ready').expect(200);
  });

  it('answers 503 transient OperationOutcomes (never an unsigned body) while the HSM is down', async () => {
    // Requests in flight when the HSM dies: each is either a valid signature or a 503.
    const inFlight = Array.from({ length: 40 }, () => signOverHttp().then((r) => r));
    await sleep(5);
    await server.kill();
    const settled = await Promise.all(inFlight);
    for (const res of settled) {
      expect([200, 503]).toContain(res.status);
      if (res.status === 200) await expectValidJws(res.text);
    }

    for (let i = 0; i < 5; i++) {
      const res = await signOverHttp();
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('5');
      expect(res.body).toMatchObject({
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'error', code: 'transient' }],
      });
      expect(res.text).not.toContain('payload to sign');
    }
    // The real intake: 503, and nothing was stored (no unsigned or half-made exchange).
    const rowsBefore = await exchangeRows();
    const refused = await intake();
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'transient' }] });
    expect(await exchangeRows()).toBe(rowsBefore);
    // Below the edge: a transient HsmError with a stable code.
    const err = await app.keyring
      .signer('sig')
      .sign(Buffer.from('x'))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HsmError);
    expect(err).toMatchObject({ code: 'HSM_UNAVAILABLE', transient: true });
    const ready = await request(app.server).get('/ready').expect(503);
    expect(JSON.stringify(ready.body)).toContain('hsm:');
  });

  it('recovers by itself when the HSM returns, without a restart', async () => {
    await server.start();
    let status = 0;
    let text = '';
    for (let i = 0; i < 40 && status !== 200; i++) {
      const res = await signOverHttp();
      status = res.status;
      text = res.text;
      if (status !== 200) {
        expect(status).toBe(503);
        await sleep(250);
      }
    }
    expect(status).toBe(200);
    await expectValidJws(text);
    // Fully healed: a burst across the whole pool succeeds.
    const burst = await Promise.all(Array.from({ length: 20 }, () => signOverHttp()));
    expect(burst.map((r) => r.status)).toEqual(Array(20).fill(200));
    await intake().expect(202);
    await request(app.server).get('/ready').expect(200);
  });
});

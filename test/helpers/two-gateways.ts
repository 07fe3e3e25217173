import request from 'supertest';
import { startTestGateway, type TestGateway } from './gateway.ts';
import type { BuildOptions } from '../../plugins/app.ts';
import { testClient, type TestClient } from './auth.ts';
import { startWorker, type WorkerHandle } from '../../src/worker/runner.ts';
import { SCOPE_ADMIN, SCOPE_ALL_READ, SCOPE_ALL_WRITE, SCOPE_BUNDLE_WRITE } from '../../src/auth/scopes.ts';

export interface Peer {
  gw: TestGateway;
  /** The local EHR: sends (Bundle.write), reads its exchanges and pulls/acks its inbox (routed every partner). */
  ehr: TestClient;
  admin: TestClient;
  worker?: WorkerHandle;
}

export interface TwoGateways {
  a: Peer;
  b: Peer;
  close(): Promise<void>;
}

async function peer(env: Record<string, string>, build: BuildOptions = {}): Promise<Peer> {
  const gw = await startTestGateway(env, build);
  return {
    gw,
    ehr: await testClient(gw, { scopes: [SCOPE_BUNDLE_WRITE, SCOPE_ALL_READ, SCOPE_ALL_WRITE], receivesFrom: ['*'] }),
    admin: await testClient(gw, { scopes: [SCOPE_ADMIN] }),
  };
}

/** Register `other` in `self`'s directory through the admin API, by its org id, inbox URL and JWKS URL. */
async function registerPartner(self: Peer, other: Peer): Promise<void> {
  const o = other.gw.config;
  await request(self.gw.app.server)
    .post('/admin/partners')
    .set('authorization', await self.admin.bearer())
    .send({
      id: o.org,
      name: `gateway ${o.org}`,
      endpoint: `${o.baseUrl}/inbox`,
      jwks_uri: `${o.baseUrl}/.well-known/jwks.json`,
    })
    .expect(201);
}

/**
 * Gateways A and B in this process, on 127.0.0.1, each with its own
 * database and its own SoftHSM token (one token directory per process),
 * registered as each other's partners through their published JWKS URLs.
 * Both run a delivery worker. `build` passes options (e.g. a logger) to each gateway;
 * `sides` adds configuration to one of them only (e.g. B's LOCAL_FHIR_BASE_URL).
 */
export async function startTwoGateways(
  env: Record<string, string> = {},
  build: { a?: BuildOptions; b?: BuildOptions } = {},
  sides: { a?: Record<string, string>; b?: Record<string, string> } = {},
): Promise<TwoGateways> {
  const fast = { DELIVERY_RETRY_BASE: '100ms', DELIVERY_RETRY_MAX: '500ms', DELIVERY_TIMEOUT: '10s', ...env };
  const a = await peer({ ...fast, ...sides.a }, build.a);
  const b = await peer({ ...fast, ...sides.b }, build.b);
  await registerPartner(a, b);
  await registerPartner(b, a);
  a.worker = await startWorker(a.gw.app.ctx);
  b.worker = await startWorker(b.gw.app.ctx);
  return {
    a,
    b,
    close: async () => {
      for (const p of [a, b]) {
        await p.worker?.stop();
        await p.gw.close();
      }
    },
  };
}

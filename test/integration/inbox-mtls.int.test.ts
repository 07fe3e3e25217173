import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JWK } from 'jose';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { createTestPki, type TestPki } from '../helpers/tls.ts';
import { claimsFor, seal, signContent, softPartner, type SoftPartner } from '../helpers/envelopes.ts';
import { bindPartnerCertificate } from '../../src/auth/tls-bindings.ts';

function post(port: number, body: string, pki: TestPki): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: '/inbox',
        method: 'POST',
        ca: pki.ca,
        cert: pki.client.cert,
        key: pki.client.key,
        headers: { 'content-type': 'application/jose' },
      },
      (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Under mutual TLS the client certificate names a partner: the envelope must be signed by that partner. */
describe('POST /inbox under mutual TLS', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let bound: SoftPartner;
  let other: SoftPartner;
  let enc: JWK & { kid: string };
  beforeAll(async () => {
    pki = createTestPki();
    gw = await startTestGateway({
      TLS_CERT_FILE: pki.serverCertFile,
      TLS_KEY_FILE: pki.serverKeyFile,
      TLS_CLIENT_CA_FILE: pki.caFile,
    });
    bound = await softPartner('https://bound.test');
    other = await softPartner('https://other.test');
    for (const p of [bound, other])
      await gw.app.ctx.directory.add({ id: p.id, endpoint: `${p.id}/inbox`, jwks: p.jwks });
    await bindPartnerCertificate(gw.app.ctx.pool, { partnerId: bound.id, certPem: pki.client.cert.toString() });
    enc = gw.app.ctx.keyring.jwks().keys.find((k) => k.use === 'enc') as unknown as JWK & { kid: string };
  });
  afterAll(async () => gw?.close());

  it("accepts the bound partner's envelope and refuses another partner's with SENDER_MISMATCH, storing nothing", async () => {
    const ok = await post(
      gw.config.port,
      seal(
        enc,
        await signContent(bound, claimsFor(bound, gw.config.org, { resourceType: 'Bundle', type: 'collection' })),
      ),
      pki,
    );
    expect(ok.status).toBe(200);
    const claims = claimsFor(other, gw.config.org, { resourceType: 'Bundle', type: 'collection' });
    const res = await post(gw.config.port, seal(enc, await signContent(other, claims)), pki);
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body).issue[0].details.coding[0].code).toBe('SENDER_MISMATCH');
    const { rows } = await gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM inbox_messages WHERE jti = $1', [
      claims.jti,
    ]);
    expect(rows[0].n).toBe(0);
  });
});

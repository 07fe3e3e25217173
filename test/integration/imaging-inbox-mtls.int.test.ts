import https from 'node:https';
import { randomUUID, sign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { createTestPki, type TestPki } from '../helpers/tls.ts';
import { softPartner, type SoftPartner } from '../helpers/envelopes.ts';
import { bindPartnerCertificate } from '../../src/auth/tls-bindings.ts';
import { signAnnouncement } from '../../src/protocol/imaging-announcement.ts';
import type { Signer } from '../../src/jose/signer.ts';

const TYPE = 'multipart/related; type="application/jose"; boundary=bnd';

function post(port: number, body: Buffer, pki: TestPki, withCert: boolean): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: '/inbox/imaging',
        method: 'POST',
        ca: pki.ca,
        ...(withCert ? { cert: pki.client.cert, key: pki.client.key } : {}),
        headers: { 'content-type': TYPE },
      },
      (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A software signer for a test partner's announcement. */
const signerOf = (p: SoftPartner): Signer => ({
  alg: 'ES256',
  kid: p.sigKid,
  sign: async (data) => sign('sha256', data, { key: p.sigPrivate, dsaEncoding: 'ieee-p1363' }),
  signDigest: async () => {
    throw new Error('not used');
  },
});

/** Only the announcement part: enough to pass or fail the gate and the sender binding. */
async function announcedBy(p: SoftPartner, aud: string): Promise<Buffer> {
  const jws = await signAnnouncement(signerOf(p), {
    iss: p.id,
    aud,
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    exchange: randomUUID(),
  });
  return Buffer.from(`--bnd\r\nContent-Type: application/jose\r\n\r\n${jws}\r\n--bnd--\r\n`);
}

const codeOf = (body: string): string => JSON.parse(body).issue[0].details.coding[0].code;

/** POST /inbox/imaging is a peer route like POST /inbox: mutual TLS and the sender binding apply. */
describe('POST /inbox/imaging under mutual TLS', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let bound: SoftPartner;
  let other: SoftPartner;
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
  });
  afterAll(async () => gw?.close());

  const audited = async (where: string) =>
    Number((await gw.app.ctx.pool.query(`SELECT count(*) FROM audit_log WHERE ${where}`)).rows[0].count);

  it('refuses a peer without a client certificate: 401, audited as an auth failure on this route', async () => {
    const res = await post(gw.config.port, await announcedBy(bound, gw.config.org), pki, false);
    expect(res.status).toBe(401);
    expect(codeOf(res.body)).toBe('UNAUTHENTICATED');
    expect(
      await audited(`type = 'auth.failure' AND entry LIKE '%no_client_certificate%' AND entry LIKE '%/inbox/imaging%'`),
    ).toBe(1);
  });

  it("refuses an announcement signed by another partner than the certificate's: 403 SENDER_MISMATCH, audited", async () => {
    const res = await post(gw.config.port, await announcedBy(other, gw.config.org), pki, true);
    expect(res.status).toBe(403);
    expect(codeOf(res.body)).toBe('SENDER_MISMATCH');
    expect(await audited(`type = 'inbox.refused' AND entry LIKE '%SENDER_MISMATCH%'`)).toBe(1);
  });

  it('lets the bound partner past the gate: the pipeline reads on and refuses only the missing parts', async () => {
    const res = await post(gw.config.port, await announcedBy(bound, gw.config.org), pki, true);
    expect(res.status).toBe(400);
    expect(['UNAUTHENTICATED', 'FORBIDDEN', 'SENDER_MISMATCH']).not.toContain(codeOf(res.body));
  });
});

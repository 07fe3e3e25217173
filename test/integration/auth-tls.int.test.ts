import https from 'node:https';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { createTestPki, type TestPki } from '../helpers/tls.ts';
import { bindPartnerCertificate } from '../../src/auth/tls-bindings.ts';
import { checkPeerCertificate, httpsOptions } from '../../src/auth/tls.ts';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function get(port: number, path: string, options: https.RequestOptions = {}, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path, method, ...options }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Handshake only: the negotiated protocol, or the error code. */
function handshake(port: number, options: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ...options }, () => {
      const p = s.getProtocol() ?? 'unknown';
      s.end();
      resolve(p);
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

const TLS11_ONLY: tls.ConnectionOptions = {
  minVersion: 'TLSv1.1',
  maxVersion: 'TLSv1.1',
  ciphers: 'DEFAULT@SECLEVEL=0',
};

describe('TLS listener: minimum version, HSTS, mutual TLS on /inbox', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let port: number;

  beforeAll(async () => {
    pki = createTestPki();
    gw = await startTestGateway({
      TLS_CERT_FILE: pki.serverCertFile,
      TLS_KEY_FILE: pki.serverKeyFile,
      TLS_CLIENT_CA_FILE: pki.caFile,
    });
    port = gw.config.port;
    await bindPartnerCertificate(gw.app.ctx.pool, {
      partnerId: 'https://partner.example.org',
      certPem: pki.client.cert.toString(),
    });
  });
  afterAll(async () => gw?.close());

  it('serves HTTPS with HSTS and an https base URL', async () => {
    expect(gw.config.baseUrl).toBe(`https://127.0.0.1:${port}`);
    const res = await get(port, '/health', { ca: pki.ca });
    expect(res.status).toBe(200);
    expect(res.headers['strict-transport-security']).toMatch(/^max-age=\d+; includeSubDomains$/);
    const smart = JSON.parse((await get(port, '/.well-known/smart-configuration', { ca: pki.ca })).body);
    expect(smart.token_endpoint).toBe(`https://127.0.0.1:${port}/auth/token`);
  });

  it('refuses a client that offers TLS 1.1 only (the server answers protocol_version)', async () => {
    expect(await handshake(port, { ca: pki.ca, ...TLS11_ONLY })).toBe('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    expect(await handshake(port, { ca: pki.ca, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' })).toBe('TLSv1.2');
  });

  it('TLS_MIN_VERSION=TLSv1.3 refuses a TLS 1.2 client', async () => {
    const server = https.createServer(httpsOptions({ ...gw.config, tlsMinVersion: 'TLSv1.3' })!, (_req, res) =>
      res.end('ok'),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const p = (server.address() as { port: number }).port;
      expect(await handshake(p, { ca: pki.ca, maxVersion: 'TLSv1.2' })).toBe('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
      expect(await handshake(p, { ca: pki.ca })).toBe('TLSv1.3');
    } finally {
      server.close();
    }
  });

  it('control: the same TLS 1.1 client does connect to a server that allows TLS 1.1', async () => {
    const server = tls.createServer(
      {
        cert: readFileSync(pki.serverCertFile),
        key: readFileSync(pki.serverKeyFile),
        minVersion: 'TLSv1',
        ciphers: 'DEFAULT@SECLEVEL=0',
      },
      (s) => s.end(),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      expect(await handshake((server.address() as { port: number }).port, { ca: pki.ca, ...TLS11_ONLY })).toBe(
        'TLSv1.1',
      );
    } finally {
      server.close();
    }
  });

  it('mTLS: a certificate from the partner CA, bound to a partner, gets through to the inbox', async () => {
    // No body: the inbox route itself answers (415), so the mTLS check let the request through.
    const res = await get(port, '/inbox', { ca: pki.ca, cert: pki.client.cert, key: pki.client.key }, 'POST');
    expect(res.status).toBe(415);
    expect(JSON.parse(res.body).issue[0].diagnostics).toContain('application/jose');
  });

  it('mTLS: the check names the partner the certificate is bound to', async () => {
    const options = httpsOptions(gw.config)!;
    const server = https.createServer(options, async (req, res) => {
      res.end(JSON.stringify(await checkPeerCertificate(gw.app.ctx.pool, req.socket as tls.TLSSocket)));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const p = (server.address() as { port: number }).port;
      const good = JSON.parse((await get(p, '/', { ca: pki.ca, cert: pki.client.cert, key: pki.client.key })).body);
      expect(good).toMatchObject({ ok: true, partnerId: 'https://partner.example.org' });
      expect(good.certSha256).toMatch(/^[0-9a-f]{64}$/);
      const stranger = JSON.parse(
        (await get(p, '/', { ca: pki.ca, cert: pki.stranger.cert, key: pki.stranger.key })).body,
      );
      expect(stranger).toMatchObject({ ok: false, status: 401, reason: 'certificate_untrusted' });
    } finally {
      server.close();
    }
  });

  it('mTLS: no certificate, a self-signed stranger, another CA, or an unbound certificate are refused on /inbox', async () => {
    const none = await get(port, '/inbox', { ca: pki.ca }, 'POST');
    expect(none.status).toBe(401);
    const stranger = await get(port, '/inbox', { ca: pki.ca, cert: pki.stranger.cert, key: pki.stranger.key }, 'POST');
    expect(stranger.status).toBe(401);
    expect(JSON.parse(stranger.body).issue[0].diagnostics).toContain('untrusted');
    const other = createTestPki(); // same CA name, different key: still untrusted
    const otherCa = await get(port, '/inbox', { ca: pki.ca, cert: other.client.cert, key: other.client.key }, 'POST');
    expect(otherCa.status).toBe(401);
    await gw.app.ctx.pool.query('DELETE FROM partner_tls_bindings');
    const unbound = await get(port, '/inbox', { ca: pki.ca, cert: pki.client.cert, key: pki.client.key }, 'POST');
    expect(unbound.status).toBe(403);
    const { rows } = await gw.app.ctx.pool.query(`SELECT entry FROM audit_log WHERE type = 'auth.failure'`);
    const reasons = rows.map((r) => JSON.parse(r.entry).detail.reason);
    expect(reasons).toEqual(
      expect.arrayContaining(['no_client_certificate', 'certificate_untrusted', 'certificate_not_bound']),
    );
  });

  it('mTLS is asked for on POST /inbox only: other routes, and the EHR pull API, work without a client certificate', async () => {
    expect((await get(port, '/ready', { ca: pki.ca })).status).toBe(200);
    // Bearer-guarded, not certificate-guarded: 401 with a Bearer challenge.
    const pull = await get(port, '/inbox/messages', { ca: pki.ca });
    expect(pull.status).toBe(401);
    expect(pull.headers['www-authenticate']).toMatch(/^Bearer/);
  });
});

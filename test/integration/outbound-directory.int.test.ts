import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient } from '../helpers/auth.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { Directory } from '../../src/directory/directory.ts';
import { GatewayError } from '../../src/errors.ts';

async function keys() {
  const enc = await exportJWK((await generateKeyPair('ECDH-ES', { extractable: true })).publicKey);
  const sig = await exportJWK((await generateKeyPair('ES256', { extractable: true })).publicKey);
  return {
    enc: { ...enc, kid: await calculateJwkThumbprint(enc), use: 'enc', alg: 'ECDH-ES' },
    sig: { ...sig, kid: await calculateJwkThumbprint(sig), use: 'sig', alg: 'ES256' },
  };
}

/** A JWKS host whose answer, headers and delay the test controls, counting fetches. */
function jwksHost() {
  const state = { body: '{"keys":[]}', cacheControl: 'max-age=300', delayMs: 0, status: 200, hits: 0 };
  const server: Server = createServer((_req, res) => {
    state.hits++;
    setTimeout(
      () =>
        res
          .writeHead(state.status, { 'content-type': 'application/json', 'cache-control': state.cacheControl })
          .end(state.body),
      state.delayMs,
    );
  });
  return {
    state,
    start: () =>
      new Promise<string>((r) =>
        server.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`)),
      ),
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const logger = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };

describe('partner directory', () => {
  let gw: TestGateway;
  let adminAuth: string;
  const host = jwksHost();
  let jwksUri: string;
  beforeAll(async () => {
    gw = await startTestGateway();
    adminAuth = await (await testClient(gw, { scopes: ['system/gateway.admin'] })).bearer();
    jwksUri = await host.start();
  });
  afterAll(async () => {
    await gw?.close();
    await host.close();
  });

  it('manages partners through the admin API as Organization + Endpoint', async () => {
    const k = await keys();
    const api = () => request(gw.app.server);
    const created = await api()
      .post('/admin/partners')
      .set('authorization', adminAuth)
      .send({ id: 'org-a', name: 'Hospital A', endpoint: 'https://a.example/inbox', jwks: { keys: [k.enc, k.sig] } })
      .expect(201);
    expect(created.headers.location).toBe('/admin/partners/org-a');
    expect(created.body).toMatchObject({
      id: 'org-a',
      name: 'Hospital A',
      endpoint: 'https://a.example/inbox',
      status: 'active',
    });
    const fhir = await api().get('/admin/partners/org-a?format=fhir').set('authorization', adminAuth).expect(200);
    expect(fhir.body).toMatchObject({
      resourceType: 'Organization',
      name: 'Hospital A',
      identifier: [{ value: 'org-a' }],
      contained: [{ resourceType: 'Endpoint', address: 'https://a.example/inbox' }],
    });
    await api()
      .post('/admin/partners')
      .set('authorization', adminAuth)
      .send({ id: 'org-a', endpoint: 'https://other.example/inbox', jwks_uri: jwksUri })
      .expect(409);
    const updated = await api()
      .put('/admin/partners/org-a')
      .set('authorization', adminAuth)
      .send({ name: 'Hospital A2', endpoint: 'https://a.example/inbox', jwks_uri: jwksUri, status: 'suspended' })
      .expect(200);
    expect(updated.body).toMatchObject({ name: 'Hospital A2', jwks_uri: jwksUri, status: 'suspended' });
    const list = await api().get('/admin/partners').set('authorization', adminAuth).expect(200);
    expect(list.body.partners.map((p: { id: string }) => p.id)).toContain('org-a');
    await api().delete('/admin/partners/org-a').set('authorization', adminAuth).expect(204);
    await api().get('/admin/partners/org-a').set('authorization', adminAuth).expect(404);
    await api().get('/admin/partners').expect(401);
    const audit = await gw.app.ctx.pool.query(`SELECT type FROM audit_log WHERE type LIKE 'partner.%' ORDER BY idx`);
    expect(audit.rows.map((r) => r.type)).toEqual(['partner.added', 'partner.updated', 'partner.removed']);
  });

  it('refuses invalid, weak or mismatched keys with a clear 4xx', async () => {
    const k = await keys();
    const post = (body: object) =>
      request(gw.app.server)
        .post('/admin/partners')
        .set('authorization', adminAuth)
        .send({ id: 'org-bad', endpoint: 'https://bad.example/inbox', ...body });
    const cases: Array<[object, number, RegExp]> = [
      [{ jwks: { keys: [{ ...k.enc, crv: 'P-521' }] } }, 422, /P-256 and P-384/],
      [{ jwks: { keys: [{ kty: 'RSA', n: 'AQAB', e: 'AQAB', use: 'enc', kid: 'r' }] } }, 422, /only EC keys/],
      [{ jwks: { keys: [{ ...k.enc, alg: 'ECDH-ES+A128KW' }] } }, 422, /only ECDH-ES/],
      [{ jwks: { keys: [{ ...k.enc, y: k.enc.x }] } }, 422, /not a point/],
      [{ jwks: { keys: [{ ...k.enc, d: 'AAAA' }] } }, 400, /private key material/],
      [{ jwks: { keys: [k.sig] } }, 422, /no encryption key/],
      [{ jwks: { keys: [k.enc] }, jwks_uri: jwksUri }, 400, /exactly one of/],
      [{ jwks_uri: 'ftp://x.example/jwks' }, 400, /http or https/],
    ];
    for (const [body, status, message] of cases) {
      const res = await post(body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.body.issue[0].diagnostics).toMatch(message);
    }
    expect(await gw.app.ctx.directory.get('org-bad')).toBeUndefined();
  });

  it('caches a JWKS by Cache-Control, refreshes on an unknown kid with a cooldown, and bounds size and time', async () => {
    const k = await keys();
    host.state.body = JSON.stringify({ keys: [k.enc, k.sig] });
    host.state.cacheControl = 'max-age=600';
    const dir = new Directory({
      pool: gw.app.ctx.pool,
      fetch: globalThis.fetch,
      logger,
      limits: { cooldownMs: 400, timeoutMs: 300, maxBytes: 4096, maxKeys: 5 },
    });
    await dir.add({ id: 'org-c', endpoint: 'https://c.example/inbox', jwksUri });
    host.state.hits = 0;
    expect((await dir.encryptionKey('org-c')).kid).toBe(k.enc.kid);
    expect((await dir.verificationKey('org-c', k.sig.kid, 'current')).kid).toBe(k.sig.kid);
    expect(host.state.hits).toBe(1);

    // The partner rotates its signing key: an unknown kid refetches once, then the cooldown holds.
    const k2 = await keys();
    host.state.body = JSON.stringify({ keys: [k.enc, k2.sig, k.sig] });
    await new Promise((r) => setTimeout(r, 450));
    expect((await dir.verificationKey('org-c', k2.sig.kid, 'current')).kid).toBe(k2.sig.kid);
    expect(host.state.hits).toBe(2);
    await expect(dir.verificationKey('org-c', 'unknown-kid', 'current')).rejects.toThrow(
      /no signing key with kid unknown-kid/,
    );
    await expect(dir.verificationKey('org-c', 'unknown-kid', 'current')).rejects.toThrow(GatewayError);
    expect(host.state.hits).toBe(2);

    // Too large, too slow, too many keys: refused (fresh directories, nothing cached).
    const fresh = () =>
      new Directory({
        pool: gw.app.ctx.pool,
        fetch: globalThis.fetch,
        logger,
        limits: { cooldownMs: 400, timeoutMs: 300, maxBytes: 4096, maxKeys: 5 },
      });
    host.state.body = JSON.stringify({ keys: [k.enc], pad: 'x'.repeat(5000) });
    await expect(fresh().encryptionKey('org-c')).rejects.toThrow(/exceeds the limit of 4096 bytes|limit is 4096/);
    host.state.body = JSON.stringify({ keys: Array(6).fill(k.enc) });
    await expect(fresh().encryptionKey('org-c')).rejects.toThrow(/at most 5/);
    host.state.body = JSON.stringify({ keys: [k.enc] });
    host.state.delayMs = 1000;
    await expect(fresh().encryptionKey('org-c')).rejects.toThrow(/timed out after 300 ms/);
    host.state.delayMs = 0;
    await dir.remove('org-c');
  });

  it('works from a second shell: gateway partners add, list, remove', async () => {
    const k = await keys();
    const dir = mkdtempSync(join(tmpdir(), 'partners-cli-'));
    const file = join(dir, 'jwks.json');
    writeFileSync(file, JSON.stringify({ keys: [k.enc, k.sig] }));
    const env = cleanEnv({ DATABASE_URL: gw.databaseUrl });
    const add = await runCli(
      [
        'partners',
        'add',
        '--id',
        'org-cli',
        '--endpoint',
        'https://cli.example/inbox',
        '--jwks-file',
        file,
        '--name',
        'CLI Hospital',
      ],
      env,
    );
    expect(add.stderr).toBe('');
    expect(add.code).toBe(0);
    expect((await gw.app.ctx.directory.encryptionKey('org-cli')).kid).toBe(k.enc.kid);
    const addUri = await runCli(
      ['partners', 'add', '--id', 'org-cli2', '--endpoint', 'https://cli2.example/inbox', '--jwks-uri', jwksUri],
      env,
    );
    expect(addUri.code).toBe(0);
    const addId = await runCli(
      ['partners', 'add', '--id', 'org-cli3', '--endpoint', 'https://cli3.example/inbox', '--jwks-uri', jwksUri].concat(
        ['--identifier', 'http://hl7.org/fhir/sid/us-npi|1234567893'],
      ),
      env,
    );
    expect(addId.code).toBe(0);
    expect((await gw.app.ctx.directory.get('org-cli3'))?.identifier).toEqual({
      system: 'http://hl7.org/fhir/sid/us-npi',
      value: '1234567893',
    });
    await gw.app.ctx.directory.remove('org-cli3');
    const list = await runCli(['partners', 'list'], env);
    expect(list.stdout).toMatch(/org-cli\s+CLI Hospital\s+https:\/\/cli\.example\/inbox\s+inline \(2\)\s+active/);
    expect(list.stdout).toContain(jwksUri);
    const dup = await runCli(
      ['partners', 'add', '--id', 'org-cli', '--endpoint', 'https://x.example/inbox', '--jwks-uri', jwksUri],
      env,
    );
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/already exists/);
    const usage = await runCli(['partners', 'add', '--id', 'x', '--endpoint', 'https://x.example/inbox'], env);
    expect(usage.code).toBe(2);
    expect((await runCli(['partners', 'remove', 'org-cli'], env)).code).toBe(0);
    expect((await runCli(['partners', 'remove', 'org-cli'], env)).code).toBe(3);
    expect(await gw.app.ctx.directory.get('org-cli')).toBeUndefined();
    const del = await runCli(['deliveries', 'list', '--state', 'failed'], env);
    expect(del.code).toBe(0);
    expect(del.stdout).toMatch(/^ID\s+EXCHANGE\s+PARTNER\s+STATE/);
    const retry = await runCli(['deliveries', 'retry', '00000000-0000-4000-8000-000000000000'], env);
    expect(retry.code).toBe(3);
  }, 120_000);
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient, type TestClient } from '../helpers/auth.ts';
import {
  requireScope,
  SCOPE_ADMIN,
  SCOPE_ALL_READ,
  SCOPE_ALL_WRITE,
  SCOPE_AUDIT_READ,
  SCOPE_BUNDLE_WRITE,
} from '../../plugins/guard.ts';

describe('bearer guard: requireScope, default deny, rate limits', () => {
  let gw: TestGateway;
  let writer: TestClient;
  let reader: TestClient;
  const api = () => request(gw.app.server);

  beforeAll(async () => {
    gw = await startTestGateway({ RATE_LIMIT: '1000' }, { listen: false });
    const ctx = gw.app.ctx;
    gw.app.post('/test/send', { preHandler: requireScope(ctx, SCOPE_BUNDLE_WRITE) }, async (req) => ({
      who: req.principal?.clientId,
    }));
    gw.app.get('/test/read', { preHandler: requireScope(ctx, SCOPE_ALL_READ) }, async (req) => ({
      who: req.principal?.clientId,
    }));
    gw.app.get('/test/audit', { preHandler: requireScope(ctx, SCOPE_AUDIT_READ) }, async () => ({ ok: true }));
    gw.app.get('/test/forgotten', async () => ({ leaked: true }));
    await gw.app.ready();
    writer = await testClient(gw, { scopes: [SCOPE_ALL_WRITE] });
    reader = await testClient(gw, { scopes: [SCOPE_ALL_READ] });
  });
  afterAll(async () => gw?.close());

  it('401 with WWW-Authenticate and an OperationOutcome without a token', async () => {
    const res = await api().post('/test/send').expect(401);
    expect(res.headers['www-authenticate']).toMatch(/^Bearer realm=/);
    expect(res.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'login' }] });
  });

  it('authenticates before reading the body: an anonymous malformed body gets 401, not a parse error', async () => {
    const res = await api()
      .post('/test/send')
      .set('content-type', 'application/fhir+json')
      .send('{"not json')
      .expect(401);
    expect(res.body.issue[0].code).toBe('login');
    const authed = await api()
      .post('/test/send')
      .set('authorization', await writer.bearer())
      .set('content-type', 'application/fhir+json')
      .send('{"not json');
    expect(authed.status).toBe(400);
  });

  it('401 invalid_token with a made-up or malformed token', async () => {
    for (const auth of ['Bearer gwat_madeup', 'Bearer not a token', 'Basic dXNlcjpwYXNz']) {
      const res = await api().post('/test/send').set('authorization', auth).expect(401);
      expect(res.body.resourceType).toBe('OperationOutcome');
    }
    const res = await api().post('/test/send').set('authorization', 'Bearer gwat_madeup').expect(401);
    expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
  });

  it('system/*.write satisfies system/Bundle.write and sets request.principal', async () => {
    const res = await api()
      .post('/test/send')
      .set('authorization', await writer.bearer())
      .expect(200);
    expect(res.body.who).toBe(writer.id);
  });

  it('403 when the token lacks every listed scope, audited as authz.denied', async () => {
    const res = await api()
      .post('/test/send')
      .set('authorization', await reader.bearer())
      .expect(403);
    expect(res.body.issue[0].code).toBe('forbidden');
    expect(res.headers['www-authenticate']).toContain('insufficient_scope');
    const { rows } = await gw.app.ctx.pool.query(`SELECT entry FROM audit_log WHERE type = 'authz.denied'`);
    expect(rows.some((r) => JSON.parse(r.entry).agent.id === reader.id)).toBe(true);
  });

  it('a *.read wildcard reads exchanges but never the audit trail or admin routes', async () => {
    const bearer = await reader.bearer();
    await api().get('/test/read').set('authorization', bearer).expect(200);
    await api().get('/test/audit').set('authorization', bearer).expect(403);
    await api().get('/admin/clients').set('authorization', bearer).expect(403);
  });

  it('default deny: a route registered without a guard needs the admin scope', async () => {
    await api().get('/test/forgotten').expect(401);
    await api()
      .get('/test/forgotten')
      .set('authorization', await reader.bearer())
      .expect(403);
    const admin = await testClient(gw, { scopes: [SCOPE_ADMIN] });
    await api()
      .get('/test/forgotten')
      .set('authorization', await admin.bearer())
      .expect(200);
  });

  it('exactly the declared public and peer routes are open; nothing else is reachable without a token', () => {
    expect([...gw.app.openRoutes].sort()).toEqual(
      [
        'GET /.well-known/jwks.json',
        'GET /.well-known/smart-configuration',
        'GET /fhir/.well-known/smart-configuration',
        'GET /fhir/metadata',
        'GET /health',
        'GET /ready',
        'HEAD /.well-known/jwks.json',
        'HEAD /.well-known/smart-configuration',
        'HEAD /fhir/.well-known/smart-configuration',
        'HEAD /fhir/metadata',
        'HEAD /health',
        'HEAD /ready',
        'POST /auth/token',
        'POST /inbox',
        'POST /inbox/evidence',
        'POST /inbox/imaging',
        'POST /inbox/processed',
      ].sort(),
    );
  });

  it('public routes stay public', async () => {
    await api().get('/health').expect(200);
    await api().get('/.well-known/jwks.json').expect(200);
    await api().get('/.well-known/smart-configuration').expect(200);
    await api().get('/fhir/metadata').expect(200);
  });

  it('every documented non-public operation answers 401 without a token', async () => {
    const spec = parseYaml(readFileSync(join(import.meta.dirname, '..', '..', 'openapi.yaml'), 'utf8')) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const checked: string[] = [];
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const method of Object.keys(ops).filter((m) => ['get', 'post', 'put', 'patch', 'delete'].includes(m))) {
        const url = path.replace(/\{[^}]+\}/g, 'x1');
        if (gw.app.openRoutes.has(`${method.toUpperCase()} ${path.replace(/\{([^}]+)\}/g, ':$1')}`)) continue;
        const res = await request(gw.app.server)[method as 'get'](url);
        expect(res.status, `${method.toUpperCase()} ${path}`).toBe(401);
        expect(res.headers['www-authenticate'], `${method.toUpperCase()} ${path}`).toMatch(/^Bearer/);
        checked.push(`${method.toUpperCase()} ${path}`);
      }
    }
    expect(checked).toEqual(expect.arrayContaining(['GET /admin/clients', 'POST /admin/clients']));
  });

  it('answers 429 with Retry-After once a client exceeds its per-minute limit', async () => {
    const slow = await testClient(gw, { scopes: [SCOPE_ALL_READ], rateLimit: 3 });
    const bearer = await slow.bearer(); // the token request itself takes one
    await api().get('/test/read').set('authorization', bearer).expect(200);
    await api().get('/test/read').set('authorization', bearer).expect(200);
    const res = await api().get('/test/read').set('authorization', bearer).expect(429);
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(res.body.issue[0].code).toBe('throttled');
    // Other clients are not affected.
    await api()
      .get('/test/read')
      .set('authorization', await reader.bearer())
      .expect(200);
  });
});

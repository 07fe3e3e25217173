import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addAuditUser } from '../../src/audit/users.ts';
import { SCOPE_AUDIT_READ } from '../../src/auth/scopes.ts';
import { testClient } from '../helpers/auth.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gw: TestGateway;
let own: string;
let cookie: string;
let bearer: string;
let password: string;
const EVIL = 'http://evil.example';

const denials = async () =>
  (
    await gw.app.ctx.pool.query<{ entry: string }>(
      `SELECT entry FROM audit_log WHERE type = 'authz.denied' ORDER BY idx`,
    )
  ).rows.map((r) => JSON.parse(r.entry).detail as Record<string, unknown>);

beforeAll(async () => {
  gw = await startTestGateway();
  own = new URL(gw.config.baseUrl).origin;
  password = await addAuditUser(gw.app.ctx.pool, 'officer.csrf');
  bearer = await (await testClient(gw, { scopes: [SCOPE_AUDIT_READ] })).bearer();
  const login = await request(gw.app.server)
    .post('/audit/ui/login')
    .set('Origin', own)
    .send({ name: 'officer.csrf', password });
  expect(login.status).toBe(200);
  cookie = login.headers['set-cookie']![0]!.split(';')[0]!;
});
afterAll(async () => {
  await gw?.close();
});

const checkpoint = () => request(gw.app.server).post('/audit/checkpoint').set('Cookie', cookie);

describe('cookie-authenticated writes must come from the gateway origin, as JSON', () => {
  it('refuses POST /audit/checkpoint with the session cookie and a foreign Origin: 403, audited', async () => {
    const res = await checkpoint().set('Origin', EVIL);
    expect(res.status).toBe(403);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(await denials()).toContainEqual(
      expect.objectContaining({ reason: 'cross_origin', route: '/audit/checkpoint', method: 'POST', origin: EVIL }),
    );
    const opaque = await checkpoint().set('Origin', 'null');
    expect(opaque.status).toBe(403);
  });

  it('refuses it without an Origin unless Sec-Fetch-Site says same-origin', async () => {
    const none = await checkpoint();
    expect(none.status).toBe(403);
    expect(none.body.resourceType).toBe('OperationOutcome');
    expect(await denials()).toContainEqual(expect.objectContaining({ reason: 'origin_missing', origin: null }));
    expect((await checkpoint().set('Sec-Fetch-Site', 'cross-site')).status).toBe(403);
    expect((await checkpoint().set('Sec-Fetch-Site', 'same-origin')).status).toBe(200);
  });

  it('accepts it from the own origin, with no body or a JSON body, and refuses any other body: 415', async () => {
    expect((await checkpoint().set('Origin', own)).status).toBe(200);
    expect((await checkpoint().set('Origin', own).send({})).status).toBe(200);
    const text = await checkpoint().set('Origin', own).set('Content-Type', 'text/plain').send('{}');
    expect(text.status).toBe(415);
    expect(text.body.resourceType).toBe('OperationOutcome');
    const form = await checkpoint().set('Origin', own).type('form').send('a=1');
    expect(form.status).toBe(415);
    expect(await denials()).toContainEqual(expect.objectContaining({ reason: 'not_json', route: '/audit/checkpoint' }));
  });

  it('leaves bearer-token requests alone', async () => {
    const res = await request(gw.app.server).post('/audit/checkpoint').set('Authorization', bearer).set('Origin', EVIL);
    expect(res.status).toBe(200);
  });

  it('refuses sign-out from a foreign origin, and the session stays', async () => {
    const res = await request(gw.app.server).post('/audit/ui/logout').set('Cookie', cookie).set('Origin', EVIL);
    expect(res.status).toBe(403);
    expect((await request(gw.app.server).get('/audit/ui/session').set('Cookie', cookie)).status).toBe(200);
  });
});

describe('sign-in (login CSRF)', () => {
  const login = () => request(gw.app.server).post('/audit/ui/login');

  it('refuses a form-encoded sign-in with the right password: 415, no session, audited', async () => {
    const res = await login().set('Origin', own).type('form').send({ name: 'officer.csrf', password });
    expect(res.status).toBe(415);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.headers['set-cookie']).toBeUndefined();
    expect(await denials()).toContainEqual(expect.objectContaining({ reason: 'not_json', route: '/audit/ui/login' }));
    const noOrigin = await login()
      .set('Content-Type', 'text/plain')
      .send(JSON.stringify({ name: 'x', password: 'y' }));
    expect(noOrigin.status).toBe(415);
  });

  it('refuses an account name with a control character in it: 400 OperationOutcome, no session, audited', async () => {
    for (const name of ['officer\u0000csrf', 'officer\ncsrf', 'officer\u007fcsrf']) {
      const failures = async () =>
        (
          await gw.app.ctx.pool.query<{ entry: string }>(
            `SELECT entry FROM audit_log WHERE type = 'auth.failure' ORDER BY idx`,
          )
        ).rows;
      const before = (await failures()).length;
      const res = await login().set('Origin', own).send({ name, password });
      expect(res.status).toBe(400);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].expression).toEqual(['name']);
      expect(res.headers['set-cookie']).toBeUndefined();
      const rows = await failures();
      expect(rows.length).toBe(before + 1);
      const entry = JSON.parse(rows.at(-1)!.entry);
      expect(entry).toMatchObject({ outcome: 'minor-failure', agent: { id: 'unknown' } });
      expect(entry.detail).toMatchObject({ reason: 'malformed_name', via: 'audit-ui' });
      expect(rows.at(-1)!.entry).not.toContain('csrf');
    }
  });

  it('refuses a JSON sign-in from another site', async () => {
    const res = await login().set('Origin', EVIL).send({ name: 'officer.csrf', password });
    expect(res.status).toBe(403);
    expect(res.headers['set-cookie']).toBeUndefined();
    const fetched = await login().set('Sec-Fetch-Site', 'cross-site').send({ name: 'officer.csrf', password });
    expect(fetched.status).toBe(403);
  });

  it('accepts JSON from the own origin, and from a client that is no browser (no Origin, no Sec-Fetch-Site)', async () => {
    expect((await login().set('Origin', own).send({ name: 'officer.csrf', password })).status).toBe(200);
    expect((await login().send({ name: 'officer.csrf', password })).status).toBe(200);
  });
});

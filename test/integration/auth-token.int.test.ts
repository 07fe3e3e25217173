import { randomUUID } from 'node:crypto';
import { createPublicKey } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { SignJWT, exportSPKI } from 'jose';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient, type TestClient } from '../helpers/auth.ts';
import { setClientEnabled } from '../../src/auth/clients.ts';
import { ASSERTION_TYPE } from '../../src/auth/token-endpoint.ts';
import { SCOPE_ADMIN, SCOPE_ALL_READ, SCOPE_BUNDLE_WRITE } from '../../plugins/guard.ts';

const b64u = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** An ES256 JWS over exact header and claims texts (a repeated member, which no JSON serialiser writes). */
async function signedTexts(client: TestClient, headerText: string, claimsText: string): Promise<string> {
  const input = `${Buffer.from(headerText).toString('base64url')}.${Buffer.from(claimsText).toString('base64url')}`;
  const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, client.privateKey, Buffer.from(input));
  return `${input}.${Buffer.from(sig).toString('base64url')}`;
}

describe('POST /auth/token: SMART Backend Services client_credentials + private_key_jwt', () => {
  let gw: TestGateway;
  let ehr: TestClient;
  const post = (form: Record<string, string>) => request(gw.app.server).post('/auth/token').type('form').send(form);
  const grant = (assertion: string, extra: Record<string, string> = {}) =>
    post({
      grant_type: 'client_credentials',
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: assertion,
      scope: SCOPE_BUNDLE_WRITE,
      ...extra,
    });
  const auditTypes = async () =>
    (await gw.app.ctx.pool.query<{ type: string; entry: string }>('SELECT type, entry FROM audit_log ORDER BY idx'))
      .rows;

  beforeAll(async () => {
    gw = await startTestGateway();
    ehr = await testClient(gw, { scopes: [SCOPE_BUNDLE_WRITE, SCOPE_ALL_READ] });
  });
  afterAll(async () => gw?.close());

  it('publishes a SMART configuration', async () => {
    const res = await request(gw.app.server).get('/.well-known/smart-configuration').expect(200);
    expect(res.body).toMatchObject({
      token_endpoint: `${gw.config.baseUrl}/auth/token`,
      token_endpoint_auth_methods_supported: ['private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: ['ES256', 'ES384', 'RS384'],
      grant_types_supported: ['client_credentials'],
    });
    expect(res.body.capabilities).toContain('client-confidential-asymmetric');
    expect(res.body.scopes_supported).toEqual(
      expect.arrayContaining([SCOPE_BUNDLE_WRITE, SCOPE_ALL_READ, SCOPE_ADMIN, 'system/AuditEvent.read']),
    );
  });

  it('issues a short-lived opaque token carrying the granted scopes, and audits it without the token', async () => {
    const res = await grant(await ehr.assertion()).expect(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toMatchObject({ token_type: 'bearer', scope: SCOPE_BUNDLE_WRITE });
    expect(res.body.expires_in).toBeGreaterThan(0);
    expect(res.body.expires_in).toBeLessThanOrEqual(300);
    const { rows } = await gw.app.ctx.pool.query(
      'SELECT client_id, scopes, expires_at - issued_at AS ttl FROM auth_access_tokens',
    );
    expect(rows.some((r) => r.client_id === ehr.id)).toBe(true);
    const issued = (await auditTypes()).filter((r) => r.type === 'auth.token-issued');
    expect(issued.length).toBeGreaterThan(0);
    const all = (await auditTypes()).map((r) => r.entry).join('\n');
    expect(all).not.toContain(res.body.access_token);
    expect(all).toContain(ehr.id);
  });

  it('refuses a scope the client is not allowed', async () => {
    const res = await grant(await ehr.assertion(), { scope: SCOPE_ADMIN }).expect(400);
    expect(res.body.error).toBe('invalid_scope');
  });

  describe('negative matrix: each refused with 400/401 and an RFC 6749 error, never 5xx', () => {
    const cases: Array<[string, () => Promise<request.Response>, number, string]> = [
      [
        'alg none',
        async () =>
          grant(
            `${b64u({ alg: 'none', kid: ehr.kid })}.${b64u({ iss: ehr.id, sub: ehr.id, aud: `${gw.config.baseUrl}/auth/token`, exp: Math.floor(Date.now() / 1000) + 60, jti: randomUUID() })}.`,
          ),
        401,
        'invalid_client',
      ],
      [
        'alg NONE',
        async () =>
          grant(
            `${b64u({ alg: 'NONE', kid: ehr.kid })}.${b64u({ iss: ehr.id, sub: ehr.id, aud: `${gw.config.baseUrl}/auth/token`, exp: Math.floor(Date.now() / 1000) + 60, jti: randomUUID() })}.`,
          ),
        401,
        'invalid_client',
      ],
      [
        'HS256 with the public key as secret',
        async () => {
          const pem = await exportSPKI(createPublicKey({ key: ehr.publicJwk as never, format: 'jwk' }) as never);
          const jwt = await new SignJWT({ jti: randomUUID() })
            .setProtectedHeader({ alg: 'HS256', kid: ehr.kid })
            .setIssuer(ehr.id)
            .setSubject(ehr.id)
            .setAudience(`${gw.config.baseUrl}/auth/token`)
            .setExpirationTime('2m')
            .sign(new TextEncoder().encode(pem));
          return grant(jwt);
        },
        401,
        'invalid_client',
      ],
      [
        'wrong aud',
        async () => grant(await ehr.assertion({ aud: 'https://elsewhere.example/token' })),
        401,
        'invalid_client',
      ],
      [
        'expired',
        async () => grant(await ehr.assertion({ exp: Math.floor(Date.now() / 1000) - 600 })),
        401,
        'invalid_client',
      ],
      [
        'exp more than 5 minutes ahead',
        async () => grant(await ehr.assertion({ exp: Math.floor(Date.now() / 1000) + 900 })),
        401,
        'invalid_client',
      ],
      ['missing jti', async () => grant(await ehr.assertion({ jti: undefined })), 401, 'invalid_client'],
      [
        'a NUL in the jti',
        async () => grant(await ehr.assertion({ jti: `j\u0000${randomUUID()}` })),
        401,
        'invalid_client',
      ],
      [
        'a line feed in the jti',
        async () => grant(await ehr.assertion({ jti: `j\n${randomUUID()}` })),
        401,
        'invalid_client',
      ],
      [
        'a header that names alg twice',
        async () => {
          const claims = JSON.parse(Buffer.from((await ehr.assertion()).split('.')[1]!, 'base64url').toString());
          const header = `{"alg":"ES256","kid":"${ehr.kid}","typ":"JWT","\\u0061lg":"ES256"}`;
          return grant(await signedTexts(ehr, header, JSON.stringify(claims)));
        },
        401,
        'invalid_client',
      ],
      [
        'claims that name jti twice',
        async () => {
          const claims = JSON.parse(Buffer.from((await ehr.assertion()).split('.')[1]!, 'base64url').toString());
          const text = JSON.stringify(claims).replace('"jti":', `"jti":"${randomUUID()}","jti":`);
          return grant(await signedTexts(ehr, JSON.stringify({ alg: 'ES256', kid: ehr.kid, typ: 'JWT' }), text));
        },
        401,
        'invalid_client',
      ],
      [
        'replayed jti',
        async () => {
          const a = await ehr.assertion();
          expect((await grant(a)).status).toBe(200);
          return grant(a);
        },
        401,
        'invalid_client',
      ],
      ['iss differs from sub', async () => grant(await ehr.assertion({ sub: 'someone-else' })), 401, 'invalid_client'],
      ['unknown kid', async () => grant(await ehr.assertion({}, { kid: 'no-such-kid' })), 401, 'invalid_client'],
      [
        'jku header',
        async () => grant(await ehr.assertion({}, { jku: 'https://attacker.example/jwks.json' })),
        401,
        'invalid_client',
      ],
      [
        'x5u header',
        async () => grant(await ehr.assertion({}, { x5u: 'https://attacker.example/cert.pem' })),
        401,
        'invalid_client',
      ],
      ['jwk header', async () => grant(await ehr.assertion({}, { jwk: ehr.publicJwk })), 401, 'invalid_client'],
      [
        'unknown client',
        async () => grant(await ehr.assertion({ iss: 'nobody', sub: 'nobody' })),
        401,
        'invalid_client',
      ],
      [
        'signature by another key',
        async () => {
          const other = await testClient(gw, { scopes: [SCOPE_BUNDLE_WRITE] });
          const forged = await other.assertion({ iss: ehr.id, sub: ehr.id }, { kid: ehr.kid });
          return grant(forged);
        },
        401,
        'invalid_client',
      ],
      [
        'wrong grant_type',
        async () => grant(await ehr.assertion(), { grant_type: 'password' }),
        400,
        'unsupported_grant_type',
      ],
      [
        'wrong assertion type',
        async () =>
          grant(await ehr.assertion(), {
            client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer',
          }),
        400,
        'invalid_request',
      ],
      ['garbage assertion', async () => grant('not.a.jwt'), 401, 'invalid_client'],
      [
        'repeated parameter',
        async () =>
          request(gw.app.server)
            .post('/auth/token')
            .type('form')
            .send(`grant_type=client_credentials&grant_type=client_credentials`),
        400,
        'invalid_request',
      ],
      [
        'JSON body instead of a form',
        async () => request(gw.app.server).post('/auth/token').send({ grant_type: 'client_credentials' }),
        400,
        'invalid_request',
      ],
    ];
    for (const [name, run, status, error] of cases) {
      it(name, async () => {
        const res = await run();
        expect(res.status).toBe(status);
        expect(res.body.error).toBe(error);
        expect(typeof res.body.error_description).toBe('string');
      });
    }

    it('a disabled client gets no token, and its live tokens stop working at once', async () => {
      const c = await testClient(gw, { scopes: [SCOPE_ADMIN] });
      const bearer = await c.bearer();
      await request(gw.app.server).get('/admin/clients').set('authorization', bearer).expect(200);
      await setClientEnabled(gw.app.ctx.pool, c.id, false);
      const res = await grant(await c.assertion(), { scope: SCOPE_ADMIN });
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('invalid_client');
      await request(gw.app.server).get('/admin/clients').set('authorization', bearer).expect(401);
    });

    it('answers an unknown client, a disabled client, an unknown kid and a forged signature alike; only the audit says which', async () => {
      const disabled = await testClient(gw, { scopes: [SCOPE_BUNDLE_WRITE] });
      await setClientEnabled(gw.app.ctx.pool, disabled.id, false);
      const other = await testClient(gw, { scopes: [SCOPE_BUNDLE_WRITE] });
      const attempts: Array<[string, () => Promise<string>, string | undefined]> = [
        ['unknown_client', () => ehr.assertion({ iss: 'nobody-at-all', sub: 'nobody-at-all' }), undefined],
        ['unknown_client', () => ehr.assertion({ iss: 'ehr\u0000', sub: 'ehr\u0000' }), undefined],
        ['client_disabled', () => disabled.assertion(), disabled.id],
        ['kid_unknown', () => ehr.assertion({}, { kid: 'not-a-kid-of-ehr' }), ehr.id],
        ['signature_invalid', () => other.assertion({ iss: ehr.id, sub: ehr.id }, { kid: ehr.kid }), ehr.id],
      ];
      const bodies: unknown[] = [];
      for (const [reason, assertion, clientId] of attempts) {
        const res = await grant(await assertion());
        expect(res.status).toBe(401);
        bodies.push(res.body);
        const last = (await auditTypes()).filter((r) => r.type === 'auth.failure').at(-1)!;
        const entry = JSON.parse(last.entry);
        expect(entry.detail).toMatchObject({ reason, error: 'invalid_client', endpoint: '/auth/token' });
        expect(entry.agent.id).toBe(clientId ?? 'unknown');
      }
      expect(bodies[0]).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
      for (const body of bodies) expect(body).toEqual(bodies[0]);
    });

    it('audits every refusal with a reason code and never the assertion', async () => {
      const rows = (await auditTypes()).filter((r) => r.type === 'auth.failure');
      const reasons = rows.map((r) => JSON.parse(r.entry).detail.reason);
      expect(reasons).toEqual(
        expect.arrayContaining([
          'alg_not_allowed',
          'expired',
          'jti_replayed',
          'kid_unknown',
          'header_refused',
          'client_disabled',
          'claim_aud',
          'exp_too_far',
          'claim_jti',
          'malformed_assertion',
        ]),
      );
      expect(rows.map((r) => r.entry).join('\n')).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
    });
  });
});

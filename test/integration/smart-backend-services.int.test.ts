import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { registerClient } from '../../src/auth/clients.ts';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/**
 * A SMART Backend Services client written from the IG alone: it knows the FHIR
 * base URL, its client id and its own key, and finds everything else by discovery.
 */
interface BackendClient {
  id: string;
  kid: string;
  key: CryptoKey;
}

describe('SMART Backend Services against {fhir base} discovery alone', () => {
  let gw: TestGateway;
  let fhirBase: string;
  let jwksServer: Server;
  let published: { keys: JWK[] } = { keys: [] };
  let jwksUrl: string;
  let inline: BackendClient;
  let byUri: BackendClient;

  const discover = async () => {
    const res = await fetch(`${fhirBase}/.well-known/smart-configuration`);
    expect(res.status).toBe(200);
    return (await res.json()) as Record<string, unknown>;
  };
  const assertion = async (client: BackendClient, tokenEndpoint: string, header: Record<string, unknown> = {}) =>
    new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES384', kid: client.kid, typ: 'JWT', ...header })
      .setIssuer(client.id)
      .setSubject(client.id)
      .setAudience(tokenEndpoint)
      .setExpirationTime('4m')
      .sign(client.key);
  const tokenRequest = async (
    client: BackendClient,
    scope: string,
    options: { header?: Record<string, unknown>; authorization?: string } = {},
  ) => {
    const tokenEndpoint = (await discover()).token_endpoint as string;
    const res = await fetch(tokenEndpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...(options.authorization ? { authorization: options.authorization } : {}),
      },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_assertion_type: ASSERTION_TYPE,
        client_assertion: await assertion(client, tokenEndpoint, options.header),
        scope,
      }),
    });
    return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
  };
  const lastAuthFailure = async () => {
    const { rows } = await gw.app.ctx.pool.query<{ entry: string }>(
      `SELECT entry FROM audit_log WHERE type = 'auth.failure' ORDER BY idx DESC LIMIT 1`,
    );
    return JSON.parse(rows[0]?.entry ?? '{}') as { agent: { id: string }; detail: Record<string, unknown> };
  };
  const newClient = async (id: string): Promise<BackendClient & { jwk: JWK }> => {
    const { privateKey, publicKey } = await generateKeyPair('ES384');
    const kid = `k-${randomUUID().slice(0, 8)}`;
    return { id, kid, key: privateKey, jwk: { ...(await exportJWK(publicKey)), kid } };
  };
  const scopes = ['system/Bundle.write', 'system/*.read', 'system/AuditEvent.read'];

  beforeAll(async () => {
    jwksServer = createServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(published)),
    );
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
    jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
    gw = await startTestGateway();
    fhirBase = `${gw.config.baseUrl}/fhir`;
    const a = await newClient(`smart-inline-${randomUUID().slice(0, 8)}`);
    await registerClient(gw.app.ctx.pool, { id: a.id, jwks: { keys: [a.jwk] }, scopes });
    const b = await newClient(`smart-uri-${randomUUID().slice(0, 8)}`);
    published = { keys: [b.jwk] };
    await registerClient(gw.app.ctx.pool, { id: b.id, jwksUri: jwksUrl, scopes });
    inline = a;
    byUri = b;
  });
  afterAll(async () => {
    await gw?.close();
    jwksServer?.close();
  });

  it('discovery answers at {fhir base}/.well-known/smart-configuration with exactly the backend services fields', async () => {
    const doc = await discover();
    expect(Object.keys(doc).sort()).toEqual(
      [
        'capabilities',
        'grant_types_supported',
        'scopes_supported',
        'token_endpoint',
        'token_endpoint_auth_methods_supported',
        'token_endpoint_auth_signing_alg_values_supported',
      ].sort(),
    );
    expect(doc).toMatchObject({
      token_endpoint: `${gw.config.baseUrl}/auth/token`,
      token_endpoint_auth_methods_supported: ['private_key_jwt'],
      grant_types_supported: ['client_credentials'],
    });
    expect(doc.token_endpoint_auth_signing_alg_values_supported).toEqual(expect.arrayContaining(['ES384', 'RS384']));
    expect([...(doc.capabilities as string[])].sort()).toEqual(
      ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'].sort(),
    );
    expect(doc.scopes_supported).toEqual(
      expect.arrayContaining(['system/Bundle.write', 'system/*.read', 'system/Bundle.c', 'system/*.rs']),
    );
    // No OpenID Connect, no browser flow: nothing that would send a client looking for them.
    for (const absent of ['issuer', 'jwks_uri', 'response_types_supported', 'authorization_endpoint'])
      expect(doc, absent).not.toHaveProperty(absent);
    // The root copy stays, and says the same.
    const root = await fetch(`${gw.config.baseUrl}/.well-known/smart-configuration`);
    expect(await root.json()).toEqual(doc);
  });

  it('a v1 token and a v2 token, each granted in the syntax asked, both reach a FHIR route', async () => {
    for (const scope of ['system/AuditEvent.read', 'system/AuditEvent.rs']) {
      const res = await tokenRequest(inline, scope);
      expect(res.status, scope).toBe(200);
      expect(res.body).toMatchObject({ token_type: 'bearer', scope });
      const search = await fetch(`${fhirBase}/AuditEvent?_count=1`, {
        headers: { authorization: `Bearer ${res.body.access_token}`, accept: 'application/fhir+json' },
      });
      expect(search.status, scope).toBe(200);
      expect(((await search.json()) as { resourceType: string }).resourceType).toBe('Bundle');
    }
  });

  it('v2 create on Bundle passes the $process-message guard exactly as v1 write does; read-only v2 does not', async () => {
    const post = async (scope: string) => {
      const token = (await tokenRequest(inline, scope)).body.access_token as string;
      const res = await fetch(`${fhirBase}/$process-message`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
        body: JSON.stringify({ resourceType: 'Bundle', type: 'message', entry: [] }),
      });
      return { status: res.status, body: await res.json() };
    };
    const v1 = await post('system/Bundle.write');
    expect([401, 403]).not.toContain(v1.status);
    expect(v1.status).toBeLessThan(500);
    for (const scope of ['system/Bundle.c', 'system/Bundle.cud', 'system/Bundle.cruds']) {
      const v2 = await post(scope);
      expect(v2.status, scope).toBe(v1.status);
      expect(v2.body, scope).toEqual(v1.body);
    }
    expect((await post('system/Bundle.rs')).status).toBe(403);
  });

  it('v2 read scopes reach the read routes; a wildcard still never reaches the audit trail', async () => {
    const res = await tokenRequest(inline, 'system/*.rs');
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('system/*.rs');
    const auth = { authorization: `Bearer ${res.body.access_token}` };
    expect((await fetch(`${gw.config.baseUrl}/inbox/messages`, { headers: auth })).status).toBe(200);
    expect((await fetch(`${fhirBase}/AuditEvent`, { headers: auth })).status).toBe(403);
  });

  it('a scope beyond the registration, or not a valid scope, is invalid_scope and audited', async () => {
    for (const [scope, reason] of [
      ['system/AuditEvent.cruds', 'scope_not_allowed'],
      ['system/*.c', 'scope_not_allowed'],
      ['system/*.cruds', 'scope_not_allowed'],
      ['system/gateway.admin', 'scope_not_allowed'],
      ['system/Bundle.sr', 'scope_invalid'],
      ['system/Bundle.rw', 'scope_invalid'],
      ['system/*.rs?category=laboratory', 'scope_invalid'],
      ['patient/*.rs', 'scope_invalid'],
      ['system/*.rs openid', 'scope_invalid'],
    ] as const) {
      const res = await tokenRequest(inline, scope);
      expect(res.status, scope).toBe(400);
      expect(res.body.error, scope).toBe('invalid_scope');
      expect((await lastAuthFailure()).detail, scope).toMatchObject({ reason, error: 'invalid_scope' });
    }
  });

  it('jku equal to the registered JWKS URL is honoured; any other jku fails client authentication, audited', async () => {
    const ok = await tokenRequest(byUri, 'system/*.rs', { header: { jku: jwksUrl } });
    expect(ok.status).toBe(200);
    for (const [client, jku] of [
      [byUri, 'https://attacker.example/jwks.json'],
      [byUri, jwksUrl.replace('/jwks.json', '/other.json')],
      [inline, jwksUrl],
    ] as const) {
      const res = await tokenRequest(client, 'system/*.rs', { header: { jku } });
      expect(res.status, jku).toBe(401);
      expect(res.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
      const audit = await lastAuthFailure();
      expect(audit.detail).toMatchObject({ reason: 'jku_not_registered', error: 'invalid_client' });
      expect(audit.agent.id).toBe(client.id);
    }
  });

  it('every 401 of the token endpoint carries WWW-Authenticate, in the scheme the client tried', async () => {
    const forged = await tokenRequest({ ...inline, kid: 'no-such-kid' }, 'system/*.rs');
    expect(forged.status).toBe(401);
    expect(forged.headers.get('www-authenticate')).toBe('private_key_jwt realm="fhir-gateway", error="invalid_client"');

    const basic = await tokenRequest(inline, 'system/*.rs', {
      authorization: `Basic ${Buffer.from(`${inline.id}:secret`).toString('base64')}`,
    });
    expect(basic.status).toBe(401);
    expect(basic.body.error).toBe('invalid_client');
    expect(basic.headers.get('www-authenticate')).toBe('Basic realm="fhir-gateway", error="invalid_client"');
    expect((await lastAuthFailure()).detail).toMatchObject({ reason: 'authorization_header_refused' });
  });

  it('bearer routes answer 401 with a Bearer challenge, error= when a token was offered (RFC 6750)', async () => {
    const none = await fetch(`${fhirBase}/AuditEvent`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="fhir-gateway"');
    const bad = await fetch(`${fhirBase}/AuditEvent`, { headers: { authorization: 'Bearer gwat_not-a-token' } });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toBe('Bearer realm="fhir-gateway", error="invalid_token"');
  });

  it('the CapabilityStatement declares SMART-on-FHIR and its token endpoint (oauth-uris)', async () => {
    const cs = (await (await fetch(`${fhirBase}/metadata`)).json()) as {
      rest: Array<{ security: { extension: unknown[]; service: Array<{ coding: unknown[] }> } }>;
    };
    const security = cs.rest[0]!.security;
    expect(security.service[0]!.coding).toContainEqual({
      system: 'http://terminology.hl7.org/CodeSystem/restful-security-service',
      code: 'SMART-on-FHIR',
    });
    expect(security.extension).toContainEqual({
      url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
      extension: [{ url: 'token', valueUri: (await discover()).token_endpoint }],
    });
  });
});

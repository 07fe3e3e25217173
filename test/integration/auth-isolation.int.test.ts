import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient, type TestClient } from '../helpers/auth.ts';
import { softPartner } from '../helpers/envelopes.ts';
import { SCOPE_ADMIN, SCOPE_ALL_READ, SCOPE_ALL_WRITE, SCOPE_AUDIT_READ, SCOPE_BUNDLE_WRITE } from '../../src/auth/guard.ts';

/**
 * Tenant isolation: a client sees only what it owns; anything else is 404,
 * identical to an id that does not exist, so nothing leaks.
 */
describe('cross-client access is refused with 404', () => {
  let gw: TestGateway;
  let alice: TestClient;
  let bob: TestClient;
  let admin: TestClient;
  let partnerId: string;
  const call = async (path: string, client: TestClient, init: RequestInit = {}) =>
    fetch(`${gw.url}${path}`, { ...init, headers: { authorization: await client.bearer(), ...(init.headers as Record<string, string>) } });

  beforeAll(async () => {
    gw = await startTestGateway();
    const partner = await softPartner('https://partner-isolation.test');
    partnerId = partner.id;
    await gw.app.ctx.directory.add({ id: partner.id, endpoint: 'https://partner-isolation.test/inbox', jwks: partner.jwks });
    alice = await testClient(gw, { id: 'ehr-alice', scopes: [SCOPE_BUNDLE_WRITE, SCOPE_ALL_READ] });
    bob = await testClient(gw, { id: 'ehr-bob', scopes: [SCOPE_BUNDLE_WRITE, SCOPE_ALL_READ] });
    admin = await testClient(gw, { id: 'ops', scopes: [SCOPE_ADMIN] });
  });
  afterAll(async () => gw?.close());

  it('exchanges: GET /exchanges/{id} of another client is 404, the same as an unknown id', async () => {
    const bundle = { resourceType: 'Bundle', type: 'collection', entry: [{ fullUrl: `urn:uuid:${randomUUID()}`, resource: { resourceType: 'Basic', id: 'b1' } }] };
    const sent = await call(`/exchanges?recipient=${encodeURIComponent(partnerId)}`, alice, {
      method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(bundle),
    });
    expect(sent.status).toBe(202);
    const location = sent.headers.get('location')!;
    expect(location).toMatch(/^\/exchanges\/.+/);

    expect((await call(location, alice)).status).toBe(200);
    const foreign = await call(location, bob);
    expect(foreign.status).toBe(404);
    const unknown = await call(`/exchanges/${randomUUID()}`, bob);
    expect(unknown.status).toBe(404);
    const [f, u] = [(await foreign.json()) as { issue: Array<{ code: string }> }, (await unknown.json()) as { issue: Array<{ code: string }> }];
    expect(f.issue[0]!.code).toBe('not-found');
    expect(u.issue[0]!.code).toBe('not-found');
    // The administrator may look at any exchange.
    expect((await call(location, admin)).status).toBe(200);
  });

  it('audit trail: EHR clients (even with system/*.read or *.write) are refused; only system/AuditEvent.read reads it', async () => {
    const officer = await testClient(gw, { id: 'compliance', scopes: [SCOPE_AUDIT_READ] });
    const greedy = await testClient(gw, { id: 'ehr-greedy', scopes: [SCOPE_ALL_READ, SCOPE_ALL_WRITE] });
    for (const path of ['/fhir/AuditEvent', '/audit/export', '/audit/checkpoint']) {
      expect((await call(path, alice)).status, path).toBe(403);
      expect((await call(path, greedy)).status, path).toBe(403);
    }
    const own = await call('/fhir/AuditEvent', officer);
    expect(own.status).toBe(200);
    expect(((await own.json()) as { resourceType: string }).resourceType).toBe('Bundle');
  });

  it('admin routes: EHR clients are refused', async () => {
    for (const path of ['/admin/clients', '/admin/partners', '/admin/deliveries', '/admin/keys']) {
      expect((await call(path, alice)).status, path).toBe(403);
      expect((await call(path, admin)).status, path).toBe(200);
    }
  });
});

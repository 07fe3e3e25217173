import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient, type TestClient } from '../helpers/auth.ts';
import { claimsFor, publishedEncKey, seal, signContent, softPartner, type SoftPartner } from '../helpers/envelopes.ts';
import {
  SCOPE_ADMIN,
  SCOPE_ALL_READ,
  SCOPE_ALL_WRITE,
  SCOPE_AUDIT_READ,
  SCOPE_BUNDLE_WRITE,
} from '../../plugins/guard.ts';

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
    fetch(`${gw.url}${path}`, {
      ...init,
      headers: { authorization: await client.bearer(), ...(init.headers as Record<string, string>) },
    });

  beforeAll(async () => {
    gw = await startTestGateway();
    const partner = await softPartner('https://partner-isolation.test');
    partnerId = partner.id;
    await gw.app.ctx.directory.add({
      id: partner.id,
      endpoint: 'https://partner-isolation.test/inbox',
      jwks: partner.jwks,
    });
    alice = await testClient(gw, { id: 'ehr-alice', scopes: [SCOPE_BUNDLE_WRITE, SCOPE_ALL_READ] });
    bob = await testClient(gw, { id: 'ehr-bob', scopes: [SCOPE_BUNDLE_WRITE, SCOPE_ALL_READ] });
    admin = await testClient(gw, { id: 'ops', scopes: [SCOPE_ADMIN] });
  });
  afterAll(async () => gw?.close());

  it('exchanges: GET /exchanges/{id} of another client is 404, the same as an unknown id', async () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'collection',
      entry: [
        { fullUrl: `urn:uuid:${randomUUID()}`, resource: { resourceType: 'Basic', id: 'b1', code: { text: 'note' } } },
      ],
    };
    const sent = await call(`/exchanges?recipient=${encodeURIComponent(partnerId)}`, alice, {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify(bundle),
    });
    expect(sent.status).toBe(202);
    expect(await sent.json()).toMatchObject({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'information', code: 'informational' }],
    });
    const location = sent.headers.get('location')!;
    expect(location).toMatch(/^\/exchanges\/.+/);

    expect((await call(location, alice)).status).toBe(200);
    const foreign = await call(location, bob);
    expect(foreign.status).toBe(404);
    const unknown = await call(`/exchanges/${randomUUID()}`, bob);
    expect(unknown.status).toBe(404);
    const [f, u] = [
      (await foreign.json()) as { issue: Array<{ code: string }> },
      (await unknown.json()) as { issue: Array<{ code: string }> },
    ];
    expect(f.issue[0]!.code).toBe('not-found');
    expect(u.issue[0]!.code).toBe('not-found');
    // The administrator may look at any exchange.
    expect((await call(location, admin)).status).toBe(200);
  });

  it('inbox: a client lists, reads, pulls and acknowledges only the messages of partners routed to it; others are 404 like an unknown id, and audited', async () => {
    const enc = await publishedEncKey(gw.url);
    const [pa, pb] = [
      await softPartner('https://inbox-partner-a.test'),
      await softPartner('https://inbox-partner-b.test'),
    ];
    for (const p of [pa, pb]) await gw.app.ctx.directory.add({ id: p.id, endpoint: `${p.id}/inbox`, jwks: p.jwks });
    const deliver = async (p: SoftPartner, secret: string) => {
      const claims = claimsFor(p, gw.config.org, {
        resourceType: 'Bundle',
        type: 'collection',
        entry: [{ resource: { resourceType: 'Basic', id: secret } }],
      });
      const res = await fetch(`${gw.url}/inbox`, {
        method: 'POST',
        headers: { 'content-type': 'application/jose' },
        body: seal(enc, await signContent(p, claims)),
      });
      expect(res.status).toBe(200);
      return (await gw.app.ctx.pool.query<{ id: string }>('SELECT id FROM inbox_messages WHERE jti = $1', [claims.jti]))
        .rows[0]!.id;
    };
    const fromA = await deliver(pa, 'secret-from-a');
    const fromB = await deliver(pb, 'secret-from-b');
    const ehrX = await testClient(gw, {
      id: 'ehr-x',
      scopes: [SCOPE_BUNDLE_WRITE, SCOPE_ALL_READ],
      receivesFrom: [pa.id],
    });
    const ehrY = await testClient(gw, {
      id: 'ehr-y',
      scopes: [SCOPE_BUNDLE_WRITE, SCOPE_ALL_READ],
      receivesFrom: [pb.id],
    });
    const unrouted = await testClient(gw, { id: 'ehr-unrouted', scopes: [SCOPE_BUNDLE_WRITE, SCOPE_ALL_READ] });
    const opsReader = await testClient(gw, { id: 'ops-reader', scopes: [SCOPE_ADMIN, SCOPE_ALL_READ] });
    const ids = async (client: TestClient, query = '') => {
      const res = await call(`/inbox/messages${query}`, client);
      expect(res.status).toBe(200);
      return ((await res.json()) as { messages: Array<{ id: string }> }).messages.map((m) => m.id);
    };
    const outcome = async (res: Response, id: string) => JSON.stringify(await res.json()).replaceAll(id, '<id>');

    // Listing omits what is not routed, also when filtering by that sender.
    expect(await ids(ehrX)).toEqual([fromA]);
    expect(await ids(ehrX, `?sender=${encodeURIComponent(pb.id)}`)).toEqual([]);
    expect(await ids(ehrY)).toEqual([fromB]);
    expect(await ids(unrouted)).toEqual([]);
    expect((await ids(opsReader)).sort()).toEqual([fromA, fromB].sort());

    // Read, imaging content and $ack of another client's message: 404, byte for byte the answer for an unknown id.
    const unknown = randomUUID();
    for (const [suffix, method] of [
      ['', 'GET'],
      ['/content', 'GET'],
      ['/$ack', 'POST'],
    ] as const) {
      const foreign = await call(`/inbox/messages/${fromB}${suffix}`, ehrX, { method });
      const missing = await call(`/inbox/messages/${unknown}${suffix}`, ehrX, { method });
      expect([foreign.status, missing.status], suffix).toEqual([404, 404]);
      expect(await outcome(foreign, fromB), suffix).toBe(await outcome(missing, unknown));
    }
    expect((await call(`/inbox/messages/${fromA}`, unrouted)).status).toBe(404);
    expect((await gw.app.ctx.pool.query('SELECT state FROM inbox_messages WHERE id = $1', [fromB])).rows[0].state).toBe(
      'received',
    );

    // The routed client can; so can an admin token with the read scope.
    const own = await call(`/inbox/messages/${fromB}`, ehrY);
    expect(own.status).toBe(200);
    expect(await own.text()).toContain('secret-from-b');
    expect((await call(`/inbox/messages/${fromA}`, ehrX)).status).toBe(200);
    expect((await call(`/inbox/messages/${fromA}`, opsReader)).status).toBe(200);
    const acked = await call(`/inbox/messages/${fromB}/$ack`, ehrY, { method: 'POST' });
    expect(acked.status).toBe(200);
    expect(await acked.json()).toMatchObject({ id: fromB, state: 'acknowledged', acknowledgedBy: 'ehr-y' });

    // Each refused attempt is an authz.denied entry naming the message, without content; an unknown id is not.
    const { rows } = await gw.app.ctx.pool.query<{ entry: string }>(
      `SELECT entry FROM audit_log WHERE type = 'authz.denied' ORDER BY idx`,
    );
    const denied = rows
      .map((r) => JSON.parse(r.entry) as { agent: { id: string }; detail: Record<string, string> })
      .filter((e) => e.detail.reason === 'inbox_not_routed');
    expect(denied.map((e) => [e.agent.id, e.detail.operation, e.detail.message])).toEqual([
      ['ehr-x', 'inbox.read', fromB],
      ['ehr-x', 'inbox.read', fromB],
      ['ehr-x', 'inbox.acknowledge', fromB],
      ['ehr-unrouted', 'inbox.read', fromA],
    ]);
    expect(rows.map((r) => r.entry).join('\n')).not.toMatch(/secret-from|Bundle/);
    expect(rows.some((r) => r.entry.includes(unknown))).toBe(false);

    // Routing is changed by the administrator and applies to the next request.
    const patched = await call('/admin/clients/ehr-x', admin, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ receives_from: [pa.id, pb.id] }),
    });
    expect(patched.status).toBe(200);
    expect(((await patched.json()) as { receives_from: string[] }).receives_from).toEqual([pa.id, pb.id].sort());
    expect((await call(`/inbox/messages/${fromB}`, ehrX)).status).toBe(200);
    const bad = await call('/admin/clients/ehr-x', admin, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ receives_from: ['*', pa.id] }),
    });
    expect(bad.status).toBe(400);
    expect(
      (
        await call('/admin/clients/nobody', admin, {
          method: 'PATCH',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ receives_from: [] }),
        })
      ).status,
    ).toBe(404);
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

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient, type TestClient } from '../helpers/auth.ts';
import { claimsFor, publishedEncKey, seal, signContent, softPartner, type SoftPartner } from '../helpers/envelopes.ts';

interface Meta {
  id: string;
  sender: string;
  delivery: string;
  exchange: string;
  digest: string;
  state: string;
  receivedAt: string;
  acknowledgedBy: string | null;
}

describe('hand-over to the local EHR: GET /inbox/messages, GET /inbox/messages/{id}, POST /inbox/messages/{id}/$ack', () => {
  let gw: TestGateway;
  let partner: SoftPartner;
  let reader: TestClient;
  let acker: TestClient;
  let enc: Awaited<ReturnType<typeof publishedEncKey>>;
  const api = async (path: string, client: TestClient | undefined, init: RequestInit = {}) =>
    fetch(`${gw.url}${path}`, {
      ...init,
      headers: {
        ...(client ? { authorization: await client.bearer() } : {}),
        ...(init.headers as Record<string, string>),
      },
    });

  /** Deliver a bundle whose signed payload is pretty-printed, to prove the EHR gets the signed bytes, not a re-serialisation. */
  async function deliver(bundleText: string): Promise<{ jti: string; id: string }> {
    const claims = claimsFor(partner, gw.config.org, JSON.parse(bundleText));
    const { content: _c, ...rest } = claims;
    const payloadText = `{\n  ${Object.entries(rest)
      .map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`)
      .join(',\n  ')},\n  "content": ${bundleText}\n}`;
    const res = await fetch(`${gw.url}/inbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/jose' },
      body: seal(enc, await signContent(partner, claims, { payloadText })),
    });
    expect(res.status).toBe(200);
    const { rows } = await gw.app.ctx.pool.query('SELECT id FROM inbox_messages WHERE jti = $1', [claims.jti]);
    return { jti: claims.jti, id: rows[0].id };
  }

  beforeAll(async () => {
    gw = await startTestGateway();
    partner = await softPartner('https://partner-pull.test');
    await gw.app.ctx.directory.add({ id: partner.id, endpoint: 'https://partner-pull.test/inbox', jwks: partner.jwks });
    enc = await publishedEncKey(gw.url);
    reader = await testClient(gw, { scopes: ['system/*.read'], receivesFrom: [partner.id] });
    acker = await testClient(gw, { scopes: ['system/*.read', 'system/*.write'], receivesFrom: ['*'] });
  });
  afterAll(async () => gw?.close());

  it('needs a bearer token with a read scope', async () => {
    expect((await api('/inbox/messages', undefined)).status).toBe(401);
    const writer = await testClient(gw, { scopes: ['system/Bundle.write'] });
    expect((await api('/inbox/messages', writer)).status).toBe(403);
  });

  it('lists metadata only, newest first, filterable by state, with a cursor', async () => {
    const a = await deliver(
      JSON.stringify({
        resourceType: 'Bundle',
        type: 'collection',
        entry: [{ resource: { resourceType: 'Basic', id: 'secret-a' } }],
      }),
    );
    const b = await deliver(
      JSON.stringify({
        resourceType: 'Bundle',
        type: 'collection',
        entry: [{ resource: { resourceType: 'Basic', id: 'secret-b' } }],
      }),
    );
    const res = await api('/inbox/messages?state=received', reader);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain('secret-');
    const list = JSON.parse(text) as { messages: Meta[] };
    const ids = list.messages.map((m) => m.id);
    expect(ids.indexOf(b.id)).toBeLessThan(ids.indexOf(a.id));
    expect(list.messages.find((m) => m.id === a.id)).toMatchObject({
      sender: partner.id,
      delivery: a.jti,
      state: 'received',
    });
    const page1 = (await (await api('/inbox/messages?_count=1', reader)).json()) as { messages: Meta[]; next: string };
    expect(page1.messages).toHaveLength(1);
    const page2 = (await (
      await api(`/inbox/messages?_count=1&before=${encodeURIComponent(page1.next)}`, reader)
    ).json()) as { messages: Meta[] };
    expect(page2.messages[0]!.id).not.toBe(page1.messages[0]!.id);
    const bad = await api('/inbox/messages?state=lost', reader);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');
  });

  it('opens and re-verifies on read, handing over the Bundle exactly as signed; audited', async () => {
    const bundleText = JSON.stringify(
      {
        resourceType: 'Bundle',
        type: 'collection',
        entry: [
          {
            fullUrl: `urn:uuid:${randomUUID()}`,
            resource: { resourceType: 'Basic', id: 'x', note: 'é ✓ "quoted" \\ back' },
          },
        ],
      },
      null,
      3,
    );
    const m = await deliver(bundleText);
    const res = await api(`/inbox/messages/${m.id}`, reader);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
    expect(res.headers.get('x-exchange-sender')).toBe(partner.id);
    expect(await res.text()).toBe(bundleText);
    const audit = await gw.app.ctx.pool.query(
      `SELECT entry FROM audit_log WHERE type = 'inbox.read' AND entry LIKE $1`,
      [`%${m.id}%`],
    );
    expect(audit.rows).toHaveLength(1);
    expect(audit.rows[0].entry).toContain(reader.id);
  });

  it('refuses to hand over a message altered at rest (500, audited as a serious failure)', async () => {
    const m = await deliver(JSON.stringify({ resourceType: 'Bundle', type: 'collection' }));
    const { rows } = await gw.app.ctx.pool.query('SELECT envelope FROM inbox_envelopes WHERE message_id = $1', [m.id]);
    const p = (rows[0].envelope as string).split('.');
    const ct = Buffer.from(p[3]!, 'base64url');
    ct[0]! ^= 1;
    p[3] = ct.toString('base64url');
    const { createHash } = await import('node:crypto');
    const altered = p.join('.');
    // Even with a matching digest, the GCM tag catches it.
    await gw.app.ctx.pool.query('UPDATE inbox_envelopes SET envelope = $2 WHERE message_id = $1', [m.id, altered]);
    await gw.app.ctx.pool.query('UPDATE inbox_messages SET envelope_digest = $2 WHERE id = $1', [
      m.id,
      'sha-256=' + createHash('sha256').update(altered).digest('base64url'),
    ]);
    const res = await api(`/inbox/messages/${m.id}`, reader);
    expect(res.status).toBe(500);
    expect(await res.text()).not.toContain('Bundle');
    const audit = await gw.app.ctx.pool.query(
      `SELECT entry FROM audit_log WHERE type = 'inbox.read' AND outcome = 'serious-failure' AND entry LIKE $1`,
      [`%${m.id}%`],
    );
    expect(audit.rows).toHaveLength(1);
  });

  it('a message whose sealed envelope is gone without a purge is damage (500, audited), not 410 Gone', async () => {
    const m = await deliver(JSON.stringify({ resourceType: 'Bundle', type: 'collection' }));
    await gw.app.ctx.pool.query('DELETE FROM inbox_envelopes WHERE message_id = $1', [m.id]);
    const res = await api(`/inbox/messages/${m.id}`, reader);
    expect(res.status).toBe(500);
    const audit = await gw.app.ctx.pool.query(
      `SELECT entry FROM audit_log WHERE type = 'inbox.read' AND outcome = 'serious-failure' AND entry LIKE $1`,
      [`%${m.id}%`],
    );
    expect(audit.rows).toHaveLength(1);
  });

  it('acknowledges with a write scope (idempotent, audited once); reading scope alone is refused', async () => {
    const m = await deliver(JSON.stringify({ resourceType: 'Bundle', type: 'collection' }));
    expect((await api(`/inbox/messages/${m.id}/$ack`, reader, { method: 'POST' })).status).toBe(403);
    const res = await api(`/inbox/messages/${m.id}/$ack`, acker, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: m.id, state: 'acknowledged', acknowledgedBy: acker.id });
    expect((await api(`/inbox/messages/${m.id}/$ack`, acker, { method: 'POST' })).status).toBe(200);
    const acked = (await (await api('/inbox/messages?state=acknowledged', reader)).json()) as { messages: Meta[] };
    expect(acked.messages.map((x) => x.id)).toContain(m.id);
    const received = (await (await api('/inbox/messages?state=received', reader)).json()) as { messages: Meta[] };
    expect(received.messages.map((x) => x.id)).not.toContain(m.id);
    const audit = await gw.app.ctx.pool.query(
      `SELECT count(*)::int AS n FROM audit_log WHERE type = 'inbox.acknowledged' AND entry LIKE $1`,
      [`%${m.id}%`],
    );
    expect(audit.rows[0].n).toBe(1);
  });

  it('answers unknown and malformed ids with 404', async () => {
    expect((await api(`/inbox/messages/${randomUUID()}`, reader)).status).toBe(404);
    expect((await api('/inbox/messages/not-a-uuid', reader)).status).toBe(404);
    expect((await api(`/inbox/messages/${randomUUID()}/$ack`, acker, { method: 'POST' })).status).toBe(404);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { messageBundle, startOutbound, type Outbound } from '../helpers/outbound.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { claimsFor, publishedEncKey, seal, signContent, softPartner, type SoftPartner } from '../helpers/envelopes.ts';

type Outcome = { issue: Array<{ details: { coding: Array<{ code: string }> }; expression?: string[] }> };
const codeOf = (body: Outcome) => body.issue[0]!.details.coding[0]!.code;

/** A message Bundle to `partnerIds` with the header changed by `mutate`. */
function message(partnerIds: string[], mutate: (b: Record<string, unknown>, h: Record<string, unknown>) => void) {
  const b = JSON.parse(messageBundle(partnerIds, 500)) as Record<string, unknown>;
  mutate(b, (b.entry as Array<{ resource: Record<string, unknown> }>)[0]!.resource);
  return JSON.stringify(b);
}

describe('FHIR messaging at intake: a repeated message is the first exchange; the origin must be ours; receivers by system and value', () => {
  let o: Outbound;
  beforeAll(async () => {
    o = await startOutbound({ ORG_IDENTIFIER: 'http://hl7.org/fhir/sid/us-npi|1234567893' }, 2, { worker: false });
  });
  afterAll(async () => o?.close());
  const post = (body: string, headers: Record<string, string> = {}) =>
    request(o.gw.app.server)
      .post('/fhir/$process-message')
      .set({ authorization: o.ehrAuth, 'content-type': 'application/fhir+json', ...headers })
      .send(body);
  const exchanges = async () =>
    Number((await o.gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM exchanges')).rows[0].n);

  it('the same Bundle.identifier (system and value) three times makes one exchange, answered like a repeated Idempotency-Key', async () => {
    const identifier = { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${randomUUID()}` };
    const body = message([o.recipients[0]!.id], (b) => (b.identifier = identifier));
    const before = await exchanges();
    const first = await post(body).expect(202);
    const again = await post(body).expect(202);
    const third = await post(body, { 'idempotency-key': randomUUID() }).expect(202);
    expect(again.headers.location).toBe(first.headers.location);
    expect(third.headers.location).toBe(first.headers.location);
    expect(again.body).toEqual(first.body);
    expect(await exchanges()).toBe(before + 1);
    // The same value under another system is another message.
    const other = await post(
      message([o.recipients[0]!.id], (b) => (b.identifier = { ...identifier, system: 'urn:x' })),
    );
    expect(other.status).toBe(202);
    expect(other.headers.location).not.toBe(first.headers.location);
  });

  it('without a Bundle.identifier, MessageHeader.id names the message', async () => {
    const id = randomUUID();
    const body = message([o.recipients[0]!.id], (_b, h) => (h.id = id));
    const first = await post(body).expect(202);
    const again = await post(body).expect(202);
    expect(again.headers.location).toBe(first.headers.location);
  });

  it('a repeated Bundle.identifier with other content or recipients is 422, and writes nothing', async () => {
    const identifier = { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${randomUUID()}` };
    await post(message([o.recipients[0]!.id], (b) => (b.identifier = identifier))).expect(202);
    const before = await exchanges();
    const changed = await post(
      message([o.recipients[0]!.id], (b, h) => ((b.identifier = identifier), (h.reason = { text: 'changed' }))),
    );
    expect(changed.status).toBe(422);
    expect(codeOf(changed.body)).toBe('UNPROCESSABLE');
    expect(changed.body.issue[0].expression).toEqual(['Bundle.identifier']);
    const elsewhere = await post(message([o.recipients[1]!.id], (b) => (b.identifier = identifier)));
    expect(elsewhere.status).toBe(422);
    expect(await exchanges()).toBe(before);
  });

  it('another client may use the same Bundle.identifier: the identity is per client', async () => {
    const { testClient } = await import('../helpers/auth.ts');
    const { SCOPE_BUNDLE_WRITE } = await import('../../src/auth/scopes.ts');
    const other = await (await testClient(o.gw, { scopes: [SCOPE_BUNDLE_WRITE] })).bearer();
    const body = message([o.recipients[0]!.id], (b) => (b.identifier = { value: randomUUID() }));
    const mine = await post(body).expect(202);
    const theirs = await post(body, { authorization: other }).expect(202);
    expect(theirs.headers.location).not.toBe(mine.headers.location);
  });

  it.each([
    ['a sender naming another organisation by value', { identifier: { value: 'https://other-hospital.example' } }],
    ['a sender naming a partner', () => ({ identifier: { value: o.recipients[1]!.id } })],
    ['our id under another system', () => ({ identifier: { system: 'urn:oid:2.16.840.1', value: o.gw.config.org } })],
    ['our NPI system with another value', { identifier: { system: 'http://hl7.org/fhir/sid/us-npi', value: '999' } }],
  ])('refuses %s with 422 MESSAGE_ORIGIN_MISMATCH and writes nothing', async (_name, sender) => {
    const before = await exchanges();
    const res = await post(
      message([o.recipients[0]!.id], (_b, h) => (h.sender = typeof sender === 'function' ? sender() : sender)),
    );
    expect(res.status).toBe(422);
    expect(codeOf(res.body)).toBe('MESSAGE_ORIGIN_MISMATCH');
    expect(res.body.issue[0].expression).toEqual(['Bundle.entry[0].resource.sender.identifier']);
    expect(await exchanges()).toBe(before);
    const { rows } = await o.gw.app.ctx.pool.query(
      `SELECT count(*)::int AS n FROM audit_log WHERE type = 'intake.refused' AND entry LIKE '%MESSAGE_ORIGIN_MISMATCH%'`,
    );
    expect(rows[0].n).toBeGreaterThan(0);
  });

  it('refuses a source.endpoint that is a partner (its id or inbox) with 422', async () => {
    for (const endpoint of [o.recipients[1]!.id, o.recipients[1]!.inbox]) {
      const res = await post(message([o.recipients[0]!.id], (_b, h) => (h.source = { endpoint })));
      expect(res.status).toBe(422);
      expect(codeOf(res.body)).toBe('MESSAGE_ORIGIN_MISMATCH');
      expect(res.body.issue[0].expression).toEqual(['Bundle.entry[0].resource.source.endpoint']);
    }
  });

  it('accepts a sender naming us: ORG_ID without a system, under the partner-id system, or ORG_IDENTIFIER', async () => {
    for (const identifier of [
      { value: o.gw.config.org },
      { system: 'urn:fhir-gateway:partner', value: o.gw.config.org },
      { system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567893' },
    ]) {
      const res = await post(
        message(
          [o.recipients[0]!.id],
          (_b, h) => ((h.sender = { identifier }), (h.source = { endpoint: o.gw.config.org })),
        ),
      );
      expect(res.status).toBe(202);
    }
  });

  it('routes receiver.identifier by system and value: a registered identifier picks its partner, another system picks nobody', async () => {
    const [a, b] = o.recipients as [(typeof o.recipients)[0], (typeof o.recipients)[0]];
    const registry = 'urn:oid:2.16.840.1.113883.4.7';
    for (const [r, value] of [
      [a, 'ORG-1'],
      [b, 'ORG-2'],
    ] as const)
      await request(o.gw.app.server)
        .put(`/admin/partners/${encodeURIComponent(r.id)}`)
        .set('authorization', o.adminAuth)
        .send({
          name: `partner ${r.id}`,
          endpoint: r.inbox,
          jwks_uri: r.jwksUri,
          identifier: { system: registry, value },
        })
        .expect(200);
    const to = (identifier: object, endpoint = 'urn:nowhere') =>
      message([a.id], (_b, h) => (h.destination = [{ endpoint, receiver: { identifier } }]));
    const res = await post(to({ system: registry, value: 'ORG-2' })).expect(202);
    const { rows } = await o.gw.app.ctx.pool.query('SELECT partner_id FROM deliveries WHERE exchange_id = $1', [
      res.headers.location!.split('/').pop(),
    ]);
    expect(rows).toEqual([{ partner_id: b.id }]);
    // The value alone under another system is not that partner; nor is the partner id under a foreign system.
    for (const identifier of [
      { system: 'urn:oid:1.2.3', value: 'ORG-2' },
      { system: 'urn:oid:1.2.3', value: b.id },
    ]) {
      const refused = await post(to(identifier));
      expect(refused.status).toBe(422);
      expect(codeOf(refused.body)).toBe('UNKNOWN_RECIPIENT');
    }
    // A value without a system is still the partner id (existing clients), as is the partner-id system.
    await post(to({ value: b.id })).expect(202);
    await post(to({ system: 'urn:fhir-gateway:partner', value: b.id })).expect(202);
    // The registration is shown, and as FHIR an Organization.identifier.
    const fhir = await request(o.gw.app.server)
      .get(`/admin/partners/${encodeURIComponent(b.id)}?format=fhir`)
      .set('authorization', o.adminAuth)
      .expect(200);
    expect(fhir.body.identifier).toContainEqual({ system: registry, value: 'ORG-2' });
  });

  it('refuses a partner registration whose identifier is not system and value', async () => {
    const r = o.recipients[0]!;
    for (const identifier of [{ value: 'x' }, { system: 'not a uri', value: 'x' }, { system: 'urn:x' }, 'x']) {
      const res = await request(o.gw.app.server)
        .put(`/admin/partners/${encodeURIComponent(r.id)}`)
        .set('authorization', o.adminAuth)
        .send({ endpoint: r.inbox, jwks_uri: r.jwksUri, identifier });
      expect(res.status).toBe(400);
      expect(codeOf(res.body)).toBe('INVALID_VALUE');
    }
  });
});

describe('FHIR messaging at the receiving gateway: MessageHeader.sender/source must be the signing partner', () => {
  let gw: TestGateway;
  let partner: SoftPartner;
  let enc: Awaited<ReturnType<typeof publishedEncKey>>;
  beforeAll(async () => {
    gw = await startTestGateway();
    partner = await softPartner('https://partner-a.test');
    await gw.app.ctx.directory.add({
      id: partner.id,
      endpoint: 'https://partner-a.test/inbox',
      jwks: partner.jwks,
      identifier: { system: 'urn:oid:2.16.840.1.113883.4.7', value: 'A-1' },
    });
    await gw.app.ctx.directory.add({
      id: 'https://partner-b.test',
      endpoint: 'https://partner-b.test/inbox',
      jwks: (await softPartner('https://partner-b.test')).jwks,
    });
    enc = await publishedEncKey(gw.url);
  });
  afterAll(async () => gw?.close());

  const deliver = async (header: Record<string, unknown>) => {
    const content = JSON.parse(message([gw.config.org], (_b, h) => Object.assign(h, header)));
    const claims = claimsFor(partner, gw.config.org, content);
    const res = await fetch(`${gw.url}/inbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/jose' },
      body: seal(enc, await signContent(partner, claims)),
    });
    const stored = await gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM inbox_messages WHERE jti = $1', [
      claims.jti,
    ]);
    return { res, stored: stored.rows[0].n as number };
  };

  it.each([
    ['a sender naming another partner', { sender: { identifier: { value: 'https://partner-b.test' } } }],
    [
      'a sender with the partner id under a foreign system',
      { sender: { identifier: { system: 'urn:x', value: 'https://partner-a.test' } } },
    ],
    ['a source.endpoint that is another partner', { source: { endpoint: 'https://partner-b.test/inbox' } }],
    ['a source.endpoint that is us', () => ({ source: { endpoint: gw.config.org } })],
  ])('refuses %s: 403 SENDER_MISMATCH, audited, nothing stored', async (_name, header) => {
    const { res, stored } = await deliver(typeof header === 'function' ? header() : header);
    expect(res.status).toBe(403);
    expect(codeOf((await res.json()) as Outcome)).toBe('SENDER_MISMATCH');
    expect(stored).toBe(0);
    const { rows } = await gw.app.ctx.pool.query(
      `SELECT count(*)::int AS n FROM audit_log WHERE type = 'inbox.refused' AND entry LIKE '%SENDER_MISMATCH%'`,
    );
    expect(rows[0].n).toBeGreaterThan(0);
  });

  it.each([
    ['no sender', {}],
    [
      'the partner id',
      { sender: { identifier: { value: 'https://partner-a.test' } }, source: { endpoint: 'https://partner-a.test' } },
    ],
    [
      'its registered identifier',
      { sender: { identifier: { system: 'urn:oid:2.16.840.1.113883.4.7', value: 'A-1' } } },
    ],
  ])('accepts a message whose origin is the signing partner (%s)', async (_name, header) => {
    const { res, stored } = await deliver(header);
    expect(res.status).toBe(200);
    expect(stored).toBe(1);
  });
});

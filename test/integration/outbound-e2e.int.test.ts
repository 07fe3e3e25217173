import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { countRows, messageBundle, settled, startOutbound, type Outbound } from '../helpers/outbound.ts';
import { envelopeDigest } from '../../src/protocol/wire.ts';

describe('outbound: intake, seal per recipient, durable delivery, receipts', () => {
  let o: Outbound;
  beforeAll(async () => {
    o = await startOutbound();
  });
  afterAll(async () => o?.close());

  it('accepts a message for two partners and delivers a sealed, signed envelope to each, confirmed by receipts', async () => {
    const [a, b] = o.recipients as [NonNullable<Outbound['recipients'][0]>, NonNullable<Outbound['recipients'][0]>];
    const marker = 'PHI-MARKER-7d1f3e';
    const body = messageBundle([a.id, b.id], 10_240, marker);
    const res = await request(o.gw.app.server)
      .post('/fhir/$process-message')
      .set('authorization', o.ehrAuth)
      .type('application/fhir+json')
      .send(body)
      .expect(202);
    const location = res.headers['content-location'] as string;
    expect(location).toMatch(/^\/exchanges\/[0-9a-f-]{36}$/);
    expect(res.body.resourceType).toBe('OperationOutcome');

    const view = await settled(o, location);
    expect(view.recipients.map((r: { state: string }) => r.state)).toEqual(['delivered', 'delivered']);
    for (const r of view.recipients) {
      expect(r.attempts).toHaveLength(1);
      expect(r.attempts[0]).toMatchObject({ attempt: 1, outcome: 'delivered', http_status: 200 });
      expect(r.receipt).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
      const got = [a, b].find((x) => x.id === r.partner)!.received.get(r.delivery)!;
      // The recipient got exactly the bytes accepted, signed for it alone.
      expect(got.content).toBe(body);
      expect(got.claims).toMatchObject({
        iss: o.gw.config.org,
        aud: r.partner,
        jti: r.delivery,
        exchange: view.id,
        content_type: 'application/fhir+json',
      });
      expect(got.idempotencyKey).toBe(r.delivery);
      expect(envelopeDigest(got.envelope)).toBe(r.envelope_digest);
    }
    // Different recipients get different delivery ids and different envelopes.
    expect(new Set(view.recipients.map((r: { delivery: string }) => r.delivery)).size).toBe(2);

    // No plaintext at rest: rows hold only envelopes; job payloads only ids.
    const pool = o.gw.app.ctx.pool;
    const dump = await pool.query(
      `SELECT (SELECT json_agg(d)::text FROM deliveries d) || (SELECT json_agg(e)::text FROM exchanges e) || coalesce((SELECT json_agg(a)::text FROM audit_log a), '') AS t`,
    );
    expect(dump.rows[0].t).not.toContain(marker);
    expect(dump.rows[0].t).not.toContain('Jane');
    const audit = await pool.query(
      `SELECT type FROM audit_log WHERE type LIKE 'intake.%' OR type LIKE 'exchange.%' OR type LIKE 'delivery.%'`,
    );
    const types = audit.rows.map((r) => r.type);
    expect(types).toEqual(
      expect.arrayContaining([
        'intake.accepted',
        'exchange.signed',
        'exchange.sealed',
        'delivery.attempt',
        'delivery.receipt',
      ]),
    );
  });

  it('opens a captured envelope and verifies its inner JWS with the Debian jose CLI', async () => {
    const a = o.recipients[0]!;
    const got = [...a.received.values()][0]!;
    const dir = mkdtempSync(join(tmpdir(), 'ob-cli-'));
    writeFileSync(join(dir, 'env.jwe'), got.envelope);
    writeFileSync(join(dir, 'enc.jwk'), JSON.stringify(a.encPrivate));
    const sig = o.gw.app.ctx.keyring.jwks().keys.find((k) => k.use === 'sig')!;
    writeFileSync(join(dir, 'sig.jwk'), JSON.stringify(sig));
    const inner = execFileSync('jose', [
      'jwe',
      'dec',
      '-i',
      join(dir, 'env.jwe'),
      '-k',
      join(dir, 'enc.jwk'),
    ]).toString();
    writeFileSync(join(dir, 'inner.jws'), inner);
    const payload = JSON.parse(
      execFileSync('jose', [
        'jws',
        'ver',
        '-i',
        join(dir, 'inner.jws'),
        '-k',
        join(dir, 'sig.jwk'),
        '-O',
        '-',
      ]).toString(),
    );
    expect(payload).toMatchObject({ aud: a.id, jti: got.jti, content: { resourceType: 'Bundle', type: 'message' } });
    // A flipped tag byte must make the CLI refuse.
    const parts = got.envelope.split('.');
    parts[4] = (parts[4]![0] === 'A' ? 'B' : 'A') + parts[4]!.slice(1);
    writeFileSync(join(dir, 'bad.jwe'), parts.join('.'));
    expect(() =>
      execFileSync('jose', ['jwe', 'dec', '-i', join(dir, 'bad.jwe'), '-k', join(dir, 'enc.jwk')], { stdio: 'pipe' }),
    ).toThrow();
  });

  it('makes a retried POST with the same Idempotency-Key a no-op returning the first answer', async () => {
    const a = o.recipients[0]!;
    const body = messageBundle([a.id]);
    const send = () =>
      request(o.gw.app.server)
        .post('/fhir/$process-message')
        .set('authorization', o.ehrAuth)
        .set('idempotency-key', 'retry-key-1')
        .type('application/fhir+json')
        .send(body);
    const first = await send().expect(202);
    const before = await countRows(o);
    const again = await send().expect(202);
    expect(again.headers['content-location']).toBe(first.headers['content-location']);
    expect(again.body).toEqual(first.body);
    const after = await countRows(o);
    expect({ e: after.exchanges, d: after.deliveries }).toEqual({ e: before.exchanges, d: before.deliveries });
    // The same key with a different body is refused, not silently replayed.
    const other = await request(o.gw.app.server)
      .post('/fhir/$process-message')
      .set('authorization', o.ehrAuth)
      .set('idempotency-key', 'retry-key-1')
      .type('application/fhir+json')
      .send(messageBundle([a.id], 100, 'other'))
      .expect(422);
    expect(other.body.issue[0].expression).toEqual(['Idempotency-Key']);
  });

  it('refuses a replayed Idempotency-Key for other recipients (422), so no recipient is silently left out', async () => {
    const [a, b] = [o.recipients[0]!, o.recipients[1]!];
    const body = JSON.stringify({ resourceType: 'Bundle', type: 'collection', entry: [] });
    const send = (...to: string[]) =>
      request(o.gw.app.server)
        .post(`/exchanges?${to.map((id) => `recipient=${encodeURIComponent(id)}`).join('&')}`)
        .set('authorization', o.ehrAuth)
        .set('idempotency-key', 'recipients-key-1')
        .type('application/fhir+json')
        .send(body);
    const first = await send(a.id).expect(202);
    const before = await countRows(o);
    for (const to of [[b.id], [a.id, b.id]]) {
      const res = await send(...to).expect(422);
      expect(res.body.issue[0].expression).toEqual(['Idempotency-Key']);
      expect(res.body.issue[0].diagnostics).toMatch(/different recipients/);
    }
    // No new exchange or delivery (the worker may meanwhile deliver the first one: jobs and attempts move on).
    const after = await countRows(o);
    expect({ e: after.exchanges, d: after.deliveries }).toEqual({ e: before.exchanges, d: before.deliveries });
    // The same recipients, named twice, is still the replay it was.
    const again = await send(a.id, a.id).expect(202);
    expect(again.headers['content-location']).toBe(first.headers['content-location']);
  });

  it('accepts concurrent submissions (group commit) and answers each with its own exchange', async () => {
    const a = o.recipients[0]!;
    const b = o.recipients[1]!;
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        request(o.gw.app.server)
          .post('/fhir/$process-message')
          .set('authorization', o.ehrAuth)
          .type('application/fhir+json')
          .send(messageBundle([a.id, b.id], 500, `n${i}`)),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(202));
    const locations = new Set(results.map((r) => r.headers['content-location']));
    expect(locations.size).toBe(20);
    for (const l of locations) {
      const { rows } = await o.gw.app.ctx.pool.query(
        'SELECT count(*)::int AS n FROM deliveries WHERE exchange_id = $1',
        [String(l).split('/').pop()],
      );
      expect(rows[0].n).toBe(2);
    }
    await settled(o, [...locations][19] as string);
  });

  it('routes other bundle types with explicit recipients, and keeps exchanges private to their sender', async () => {
    const a = o.recipients[0]!;
    const collection = JSON.stringify({
      resourceType: 'Bundle',
      type: 'collection',
      entry: [
        {
          fullUrl: 'urn:uuid:11111111-2222-4333-8444-555555555555',
          resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' } },
        },
      ],
    });
    const res = await request(o.gw.app.server)
      .post(`/exchanges?recipient=${encodeURIComponent(a.id)}`)
      .set('authorization', o.ehrAuth)
      .type('application/fhir+json')
      .send(collection)
      .expect(202);
    const location = res.headers['content-location'] as string;
    const view = await settled(o, location);
    expect(view).toMatchObject({ bundle_type: 'collection', recipients: [{ partner: a.id, state: 'delivered' }] });
    const { testClient } = await import('../helpers/auth.ts');
    const other = await testClient(o.gw, { scopes: ['system/*.read'] });
    await request(o.gw.app.server)
      .get(location)
      .set('authorization', await other.bearer())
      .expect(404);
    await request(o.gw.app.server).get(location).expect(401);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { unpackCompactJwe } from '../../src/jose/packed-jwe.ts';
import { countRows, messageBundle, startOutbound, type Outbound } from '../helpers/outbound.ts';

describe('outbound intake refuses bad input with a 4xx OperationOutcome and writes nothing', () => {
  let o: Outbound;
  beforeAll(async () => {
    o = await startOutbound({ BODY_LIMIT: '100000', JSON_MAX_DEPTH: '64' }, 1, { worker: false });
  });
  afterAll(async () => o?.close());

  const post = (body: string, type = 'application/fhir+json', path = '/fhir/$process-message') =>
    request(o.gw.app.server).post(path).set('authorization', o.ehrAuth).set('content-type', type).send(body);

  const bundleWith = (mutate: (b: { entry: Array<Record<string, unknown>> } & Record<string, unknown>) => void) => {
    const b = JSON.parse(messageBundle([o.recipients[0]!.id]));
    mutate(b);
    return JSON.stringify(b);
  };

  const cases: Array<[string, () => string, number, string, string[] | undefined, string?]> = [
    ['malformed JSON', () => '{"resourceType": "Bundle", ', 400, 'INVALID_JSON', undefined],
    ['wrong content type', () => messageBundle(['x']), 415, 'UNSUPPORTED_MEDIA_TYPE', undefined, 'application/json'],
    ['text/plain', () => 'hello', 415, 'UNSUPPORTED_MEDIA_TYPE', undefined, 'text/plain'],
    ['not a Bundle', () => JSON.stringify({ resourceType: 'Patient' }), 422, 'INVALID_FHIR', ['Bundle.resourceType']],
    ['a JSON array', () => '[1,2]', 422, 'INVALID_FHIR', ['Bundle']],
    ['an unknown Bundle.type', () => bundleWith((b) => (b.type = 'letter')), 422, 'INVALID_FHIR', ['Bundle.type']],
    [
      'message without MessageHeader (bdl-12)',
      () => bundleWith((b) => b.entry.shift()),
      422,
      'INVALID_FHIR',
      ['Bundle'],
    ],
    [
      'MessageHeader without destination (valid R4, but no one to route it to)',
      () => bundleWith((b) => delete (b.entry[0]!.resource as Record<string, unknown>).destination),
      400,
      'BAD_REQUEST',
      ['Bundle.entry[0].resource.destination'],
    ],
    [
      'unknown recipient',
      () => messageBundle(['https://nobody.example']),
      422,
      'UNKNOWN_RECIPIENT',
      ['Bundle.entry[0].resource.destination[0]'],
    ],
    [
      'duplicate fullUrl',
      () => bundleWith((b) => (b.entry[1]!.fullUrl = b.entry[0]!.fullUrl)),
      422,
      'INVALID_FHIR',
      ['Bundle.entry[1].fullUrl'],
    ],
    [
      'relative fullUrl',
      () => bundleWith((b) => (b.entry[1]!.fullUrl = 'Patient/1')),
      422,
      'INVALID_FHIR',
      ['Bundle.entry[1].fullUrl'],
    ],
    [
      'unresolvable reference',
      () =>
        bundleWith(
          (b) =>
            ((b.entry[0]!.resource as { focus: Array<{ reference: string }> }).focus[0]!.reference =
              'urn:uuid:99999999-9999-4999-8999-999999999999'),
        ),
      422,
      'INVALID_FHIR',
      ['Bundle.entry[0].resource.focus[0].reference'],
    ],
    ['oversize', () => messageBundle([o.recipients[0]!.id], 150_000), 413, 'PAYLOAD_TOO_LARGE', undefined],
    [
      'deeply nested JSON',
      () => '{"resourceType":"Bundle","a":' + '['.repeat(5000) + ']'.repeat(5000) + '}',
      400,
      'INVALID_JSON',
      undefined,
    ],
    [
      '__proto__ keys',
      () => '{"resourceType":"Bundle","type":"message","__proto__":{"polluted":true}}',
      400,
      'INVALID_JSON',
      undefined,
    ],
    [
      'a collection sent to $process-message',
      () => JSON.stringify({ resourceType: 'Bundle', type: 'collection', entry: [] }),
      422,
      'INVALID_FHIR',
      ['Bundle.type'],
    ],
    [
      'a bad Idempotency-Key is checked before anything is written',
      () => messageBundle([o.recipients[0]!.id]),
      400,
      'BAD_REQUEST',
      ['Idempotency-Key'],
    ],
  ];

  for (const [name, body, status, code, expression, type] of cases) {
    it(`refuses ${name} with ${status} ${code}`, async () => {
      const before = await countRows(o);
      const req = post(body(), type);
      if (name.startsWith('a bad Idempotency-Key')) req.set('idempotency-key', 'has spaces in it');
      const res = await req;
      expect(res.status).toBe(status);
      expect(res.headers['content-type']).toContain('application/fhir+json');
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].details.coding[0].code).toBe(code);
      if (expression) expect(res.body.issue[0].expression).toEqual(expression);
      expect(await countRows(o)).toEqual(before);
      expect({} as Record<string, unknown>).not.toHaveProperty('polluted');
    });
  }

  it('refuses a Bundle with invalid UTF-8 on both intake routes (400, audited), instead of replacing it', async () => {
    const valid = messageBundle([o.recipients[0]!.id]);
    const at = valid.indexOf('"id":"') + '"id":"'.length;
    // A lone continuation byte inside the Bundle: replaced by U+FFFD, it would be signed as other bytes than sent.
    const body = Buffer.concat([Buffer.from(valid.slice(0, at)), Buffer.from([0x80]), Buffer.from(valid.slice(at))]);
    const collection = Buffer.from(
      '{"resourceType":"Bundle","type":"collection","id":"\xed\xa0\x80","entry":[]}',
      'latin1',
    );
    const refusedCount = async () =>
      Number(
        (
          await o.gw.app.ctx.pool.query(
            `SELECT count(*) AS n FROM audit_log WHERE type = 'intake.refused' AND entry::jsonb #>> '{detail,code}' = 'INVALID_JSON'`,
          )
        ).rows[0].n,
      );
    const refusalsBefore = await refusedCount();
    for (const [path, bytes] of [
      ['/fhir/$process-message', body],
      [`/exchanges?recipient=${encodeURIComponent(o.recipients[0]!.id)}`, collection],
    ] as const) {
      const before = await countRows(o);
      // inject sends the bytes as they are (supertest would serialise a Buffer as JSON).
      const res = await o.gw.app.inject({
        method: 'POST',
        url: path,
        headers: { authorization: o.ehrAuth, 'content-type': 'application/fhir+json' },
        payload: bytes,
      });
      const outcome = res.json();
      expect(res.statusCode, path).toBe(400);
      expect(outcome.issue[0].details.coding[0].code).toBe('INVALID_JSON');
      expect(outcome.issue[0].diagnostics).toMatch(/UTF-8/);
      expect(await countRows(o)).toEqual(before);
    }
    const refusals = await refusedCount();
    expect(refusals - refusalsBefore).toBe(2);
  });

  it('refuses explicit-recipient submissions without recipients or to unknown partners', async () => {
    const collection = JSON.stringify({ resourceType: 'Bundle', type: 'collection', entry: [] });
    const before = await countRows(o);
    const none = await post(collection, 'application/fhir+json', '/exchanges').expect(400);
    expect(none.body.issue[0].expression).toEqual(['recipient']);
    const unknown = await post(
      collection,
      'application/fhir+json',
      `/exchanges?recipient=${encodeURIComponent(o.recipients[0]!.id)}&recipient=nobody`,
    ).expect(422);
    expect(unknown.body.issue[0].expression).toEqual(['recipient[1]']);
    expect(await countRows(o)).toEqual(before);
  });

  it('audits each refusal as intake.refused with its code and no content', async () => {
    const { rows } = await o.gw.app.ctx.pool.query(`SELECT entry FROM audit_log WHERE type = 'intake.refused'`);
    expect(rows.length).toBeGreaterThanOrEqual(cases.length);
    const codes = new Set(rows.map((r) => JSON.parse(r.entry).detail.code));
    for (const c of [
      'INVALID_JSON',
      'INVALID_FHIR',
      'UNKNOWN_RECIPIENT',
      'PAYLOAD_TOO_LARGE',
      'UNSUPPORTED_MEDIA_TYPE',
    ])
      expect(codes).toContain(c);
    expect(rows.map((r) => r.entry).join('')).not.toContain('Jane');
  });

  it('requires a bearer token with a write scope', async () => {
    await request(o.gw.app.server)
      .post('/fhir/$process-message')
      .set('content-type', 'application/fhir+json')
      .send(messageBundle([o.recipients[0]!.id]))
      .expect(401);
    const reader = await (await import('../helpers/auth.ts')).testClient(o.gw, { scopes: ['system/*.read'] });
    await request(o.gw.app.server)
      .post('/fhir/$process-message')
      .set('authorization', await reader.bearer())
      .set('content-type', 'application/fhir+json')
      .send(messageBundle([o.recipients[0]!.id]))
      .expect(403);
  });
});

describe('outbound intake reads no body before authentication', () => {
  let o: Outbound;
  beforeAll(async () => {
    o = await startOutbound({ BODY_LIMIT: '100000' }, 1, { worker: false });
  });
  afterAll(async () => o?.close());

  it('answers 401 to an unauthenticated oversize or malformed body, not 413 or 400', async () => {
    await request(o.gw.app.server)
      .post('/fhir/$process-message')
      .set('content-type', 'application/fhir+json')
      .send('x'.repeat(150_000))
      .expect(401);
    await request(o.gw.app.server)
      .post('/exchanges?recipient=x')
      .set('content-type', 'application/fhir+json')
      .send('{')
      .expect(401);
  });
});

describe('outbound intake writes only sealed envelopes and id-only jobs', () => {
  let o: Outbound;
  beforeAll(async () => {
    o = await startOutbound({}, 2, { worker: false });
  });
  afterAll(async () => o?.close());

  it('queues one job per delivery, keyed by the delivery id, with { deliveryId } as its whole payload', async () => {
    const ids = o.recipients.map((r) => r.id);
    const res = await request(o.gw.app.server)
      .post('/fhir/$process-message')
      .set('authorization', o.ehrAuth)
      .type('application/fhir+json')
      .send(messageBundle(ids, 3000, 'SECRET-NOTE-42'))
      .expect(202);
    const exchangeId = String(res.headers['content-location']).split('/').pop();
    const { rows: dels } = await o.gw.app.ctx.pool.query(
      `SELECT id, (SELECT e.envelope FROM delivery_envelopes e WHERE e.delivery_id = d.id) AS envelope, state FROM deliveries d WHERE exchange_id = $1`,
      [exchangeId],
    );
    expect(dels).toHaveLength(2);
    const { rows: jobs } = await o.gw.app.ctx.pool.query(
      `SELECT j.key, j.payload, t.identifier FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id`,
    );
    for (const d of dels) {
      expect(d.state).toBe('pending');
      expect(Buffer.isBuffer(d.envelope)).toBe(true); // packed at rest (packed-jwe.ts)
      expect(unpackCompactJwe(d.envelope).split('.')).toHaveLength(5);
      expect(d.envelope.toString('latin1')).not.toContain('SECRET');
      expect(unpackCompactJwe(d.envelope)).not.toContain('SECRET');
      const job = jobs.find((j) => j.key === d.id);
      expect(job).toMatchObject({ identifier: 'deliver', payload: { deliveryId: d.id } });
      expect(Object.keys(job.payload)).toEqual(['deliveryId']);
    }
  });
});

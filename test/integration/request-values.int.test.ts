import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient, type TestClient } from '../helpers/auth.ts';
import { messageBundle } from '../helpers/outbound.ts';
import { SCOPE_ADMIN, SCOPE_ALL_READ, SCOPE_ALL_WRITE, SCOPE_BUNDLE_WRITE } from '../../src/auth/scopes.ts';

/** Values no id, URL or cursor holds, as they appear in a URL: NUL, a line feed, DEL, and too long. */
const BAD_VALUES: Array<[string, string]> = [
  ['a NUL', 'x%00y'],
  ['a line feed', 'x%0Ay'],
  ['DEL', 'x%7F'],
];
const TOO_LONG = 'x'.repeat(2049);

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

/** Every route with a path parameter; `${v}` stands for the value. */
const PATH_ROUTES: Array<[Method, string, 'admin' | 'reader']> = [
  ['get', '/admin/partners/${v}', 'admin'],
  ['put', '/admin/partners/${v}', 'admin'],
  ['delete', '/admin/partners/${v}', 'admin'],
  ['get', '/admin/clients/${v}', 'admin'],
  ['patch', '/admin/clients/${v}', 'admin'],
  ['post', '/admin/clients/${v}/disable', 'admin'],
  ['post', '/admin/clients/${v}/enable', 'admin'],
  ['delete', '/admin/tls-bindings/${v}', 'admin'],
  ['post', '/admin/deliveries/${v}/retry', 'admin'],
  ['get', '/exchanges/${v}', 'reader'],
  ['get', '/imaging/${v}', 'reader'],
  ['get', '/inbox/messages/${v}', 'reader'],
  ['get', '/inbox/messages/${v}/content', 'reader'],
  ['post', '/inbox/messages/${v}/$ack', 'reader'],
  ['get', '/fhir/AuditEvent/${v}', 'admin'],
];

interface AuditRow {
  type: string;
  entry: string;
}

describe('request values: every path parameter and query value is plain text, else an audited 400', () => {
  let gw: TestGateway;
  let admin: TestClient;
  let reader: TestClient;
  let writer: TestClient;
  const auth: Record<string, string> = {};
  const audit = async (type: string) =>
    (await gw.app.ctx.pool.query<AuditRow>('SELECT type, entry FROM audit_log WHERE type = $1 ORDER BY idx', [type]))
      .rows;

  beforeAll(async () => {
    gw = await startTestGateway();
    admin = await testClient(gw, { scopes: [SCOPE_ADMIN, 'system/AuditEvent.read'] });
    reader = await testClient(gw, { scopes: [SCOPE_ALL_READ, SCOPE_ALL_WRITE], receivesFrom: ['*'] });
    writer = await testClient(gw, { scopes: [SCOPE_BUNDLE_WRITE] });
    auth.admin = await admin.bearer();
    auth.reader = await reader.bearer();
    auth.writer = await writer.bearer();
  });
  afterAll(async () => gw?.close());

  /** The refusal is a 400 INVALID_VALUE naming the parameter, audited once with ids only, never the value. */
  async function expectRefused(
    res: request.Response,
    parameter: string,
    client: TestClient,
    auditType: string,
    before: number,
  ) {
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.headers['content-type']).toContain('application/fhir+json');
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].details.coding[0].code).toBe('INVALID_VALUE');
    expect(res.body.issue[0].expression).toEqual([parameter]);
    const rows = await audit(auditType);
    expect(rows.length).toBe(before + 1);
    const entry = JSON.parse(rows.at(-1)!.entry);
    expect(entry.outcome).toBe('minor-failure');
    expect(entry.agent).toMatchObject({ type: 'client', id: client.id });
    expect(rows.at(-1)!.entry).not.toContain('xxxxxxxxxx');
    expect(rows.at(-1)!.entry).not.toMatch(/\\u0000|\\n|\\u007f/);
    return entry;
  }

  describe('path parameters', () => {
    for (const [method, template, who] of PATH_ROUTES) {
      for (const [what, value] of BAD_VALUES) {
        it(`${method.toUpperCase()} ${template} with ${what}`, async () => {
          const client = who === 'admin' ? admin : reader;
          const before = (await audit('request.refused')).length;
          const path = template.replace('${v}', value);
          const req = request(gw.app.server)[method](path).set('authorization', auth[who]!);
          const res = await (method === 'put' || method === 'patch' ? req.send({ receives_from: [] }) : req);
          const parameter = template.includes('tls-bindings') ? 'sha256' : 'id';
          const entry = await expectRefused(res, parameter, client, 'request.refused', before);
          expect(entry.detail).toMatchObject({
            reason: 'INVALID_VALUE',
            parameter,
            method: method.toUpperCase(),
          });
        });
      }
    }

    it('a path parameter longer than any identifier: 400 OperationOutcome from the router, audited, URL not echoed', async () => {
      for (const path of [`/admin/partners/${TOO_LONG}`, `/inbox/messages/${TOO_LONG}/content`]) {
        const before = (await audit('request.refused')).length;
        const res = await request(gw.app.server).get(path).set('authorization', auth.admin!);
        expect(res.status).toBe(400);
        expect(res.headers['content-type']).toContain('application/fhir+json');
        expect(res.body.issue[0].details.coding[0].code).toBe('INVALID_VALUE');
        expect(res.body.issue[0].expression).toEqual(['path']);
        expect(JSON.stringify(res.body)).not.toContain('xxxxxxxxxx');
        expect((await audit('request.refused')).length).toBe(before + 1);
      }
      // The longest identifier still reaches the route: an unknown partner.
      const longest = await request(gw.app.server)
        .get(`/admin/partners/${'x'.repeat(2048)}`)
        .set('authorization', auth.admin!);
      expect(longest.status).toBe(404);
    });

    it('a URL that does not decode: 400 OperationOutcome', async () => {
      const res = await request(gw.app.server).get('/admin/partners/%E0%A4%A').set('authorization', auth.admin!);
      expect(res.status).toBe(400);
      expect(res.body.resourceType).toBe('OperationOutcome');
    });

    it('still answers an unauthenticated caller 401 first (the check runs after the guard)', async () => {
      const res = await request(gw.app.server).get('/admin/partners/x%00y');
      expect(res.status).toBe(401);
    });

    it('leaves plain ids alone: an unknown id is still 404', async () => {
      const res = await request(gw.app.server).get('/admin/partners/no-such-partner').set('authorization', auth.admin!);
      expect(res.status).toBe(404);
    });
  });

  describe('query parameters', () => {
    for (const [what, value] of [...BAD_VALUES, ['2,049 characters', TOO_LONG] as [string, string]]) {
      it(`GET /inbox/messages?sender= with ${what}`, async () => {
        const before = (await audit('request.refused')).length;
        const res = await request(gw.app.server)
          .get(`/inbox/messages?sender=${value}`)
          .set('authorization', auth.reader!);
        await expectRefused(res, 'sender', reader, 'request.refused', before);
      });

      it(`POST /exchanges?recipient= with ${what}: refused as an intake`, async () => {
        const before = (await audit('intake.refused')).length;
        const res = await request(gw.app.server)
          .post(`/exchanges?recipient=partner-a&recipient=${value}`)
          .set('authorization', auth.writer!)
          .set('content-type', 'application/fhir+json')
          .send(JSON.stringify({ resourceType: 'Bundle', type: 'collection', entry: [] }));
        await expectRefused(res, 'recipient', writer, 'intake.refused', before);
      });

      it(`POST /imaging?recipient= with ${what}: 400 before any DICOM is read, audited`, async () => {
        const imager = await testClient(gw, { scopes: ['system/ImagingStudy.write'] });
        // The imaging intake declares its own refusal audit, as the bundle intake does.
        const before = (await audit('intake.refused')).length;
        const res = await request(gw.app.server)
          .post(`/imaging?recipient=${value}`)
          .set('authorization', await imager.bearer())
          .set('content-type', 'application/dicom')
          .send(Buffer.alloc(1024));
        await expectRefused(res, 'recipient', imager, 'intake.refused', before);
      });

      it(`GET /fhir/AuditEvent?entity= with ${what}`, async () => {
        const before = (await audit('request.refused')).length;
        const res = await request(gw.app.server)
          .get(`/fhir/AuditEvent?entity=${value}`)
          .set('authorization', auth.admin!);
        await expectRefused(res, 'entity', admin, 'request.refused', before);
      });
    }

    it('an existing invalid value (state=) is now audited too', async () => {
      const before = (await audit('request.refused')).length;
      const res = await request(gw.app.server).get('/admin/deliveries?state=lost').set('authorization', auth.admin!);
      await expectRefused(res, 'state', admin, 'request.refused', before);
    });

    it('leaves plain values alone: an empty or ordinary value is answered as before', async () => {
      const res = await request(gw.app.server)
        .get('/inbox/messages?sender=https%3A%2F%2Fpartner.test&state=')
        .set('authorization', auth.reader!);
      // state= (empty) is not one of the states: the route's own rule, as before.
      expect(res.status).toBe(400);
      expect(res.body.issue[0].expression).toEqual(['state']);
      const ok = await request(gw.app.server)
        .get('/inbox/messages?sender=https%3A%2F%2Fpartner.test')
        .set('authorization', auth.reader!);
      expect(ok.status).toBe(200);
      expect(ok.body.messages).toEqual([]);
    });
  });

  describe('recipients named in a message bundle', () => {
    // A NUL or a CR in the receiver (and so in the endpoint built from it) is not R4: refused as such first.
    for (const [what, receiver, element] of [
      ['a NUL', 'partner\u0000a', 'Bundle.entry[0].resource.destination[0].receiver.identifier.value'],
      ['a carriage return', 'partner\ra', 'Bundle.entry[0].resource.destination[0].endpoint'],
    ]) {
      it(`MessageHeader.destination.receiver.identifier.value with ${what}: 422 INVALID_FHIR, audited as an intake refusal`, async () => {
        const before = (await audit('intake.refused')).length;
        const res = await request(gw.app.server)
          .post('/fhir/$process-message')
          .set('authorization', auth.writer!)
          .set('content-type', 'application/fhir+json')
          .send(messageBundle([receiver!]));
        expect(res.status, JSON.stringify(res.body)).toBe(422);
        expect(res.body.issue[0].details.coding[0].code).toBe('INVALID_FHIR');
        expect(res.body.issue[0].code).toBe('value');
        expect(res.body.issue.map((i: { expression: string[] }) => i.expression[0])).toContain(element);
        const rows = await audit('intake.refused');
        expect(rows.length).toBe(before + 1);
        expect(JSON.parse(rows.at(-1)!.entry).agent).toMatchObject({ type: 'client', id: writer.id });
        expect(rows.at(-1)!.entry).not.toMatch(/\\u0000|\\r|partner/);
      });
    }
    for (const [what, receiver] of [['3,000 characters', 'p'.repeat(3000)]]) {
      it(`MessageHeader.destination.receiver.identifier.value with ${what}: 400, audited as an intake refusal`, async () => {
        const before = (await audit('intake.refused')).length;
        const res = await request(gw.app.server)
          .post('/fhir/$process-message')
          .set('authorization', auth.writer!)
          .set('content-type', 'application/fhir+json')
          .send(messageBundle([receiver!]));
        await expectRefused(res, 'Bundle.entry[0].resource.destination[0]', writer, 'intake.refused', before);
      });
    }
  });

  describe('inbox cursors (GET /inbox/messages?before=)', () => {
    const uuid = '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';
    for (const [what, cursor] of [
      ['the earliest JavaScript date', `-271821-04-20T00:00:00.000Z_${uuid}`],
      ['the latest JavaScript date', `+275760-09-13T00:00:00.000Z_${uuid}`],
      ['a day that does not exist', `2026-02-30T00:00:00.000Z_${uuid}`],
      ['hour 24', `2026-02-01T24:00:00.000Z_${uuid}`],
      ['a time before the epoch', `1969-12-31T23:59:59.999Z_${uuid}`],
      ['a time in another form', `Tue, 01 Dec 2026 10:00:00 GMT_${uuid}`],
      [
        '36 characters of hex and dashes that are no UUID',
        '2026-01-01T00:00:00.000Z_0123456789abcdef0123456789abcdef----',
      ],
      ['36 dashes', `2026-01-01T00:00:00.000Z_${'-'.repeat(36)}`],
      ['garbage', 'garbage'],
      ['an empty cursor', ''],
    ]) {
      it(`${what}: 400 INVALID_VALUE naming before, audited`, async () => {
        const before = (await audit('request.refused')).length;
        const res = await request(gw.app.server)
          .get(`/inbox/messages?before=${encodeURIComponent(cursor!)}`)
          .set('authorization', auth.reader!);
        const entry = await expectRefused(res, 'before', reader, 'request.refused', before);
        expect(entry.detail).toMatchObject({ parameter: 'before', route: '/inbox/messages' });
      });
    }

    it('a cursor in the form the gateway writes still pages', async () => {
      const res = await request(gw.app.server)
        .get(`/inbox/messages?before=${encodeURIComponent(`2099-12-31T23:59:59.999Z_${uuid}`)}`)
        .set('authorization', auth.reader!);
      expect(res.status).toBe(200);
      expect(res.body.messages).toEqual([]);
    });
  });

  describe('identifiers in admin request bodies', () => {
    it('POST /admin/clients with a control character in the name: 400 naming name, audited', async () => {
      for (const name of ['ehr\u0000one', 'ehr\rone']) {
        const before = (await audit('request.refused')).length;
        const res = await request(gw.app.server)
          .post('/admin/clients')
          .set('authorization', auth.admin!)
          .send({ id: `c-${before}`, name, scopes: [SCOPE_ALL_READ], jwks_uri: 'https://ehr.test/jwks.json' });
        await expectRefused(res, 'name', admin, 'request.refused', before);
      }
    });

    it('POST /admin/tls-bindings with a control character in partner_id: 400 naming partner_id, audited', async () => {
      const before = (await audit('request.refused')).length;
      const res = await request(gw.app.server)
        .post('/admin/tls-bindings')
        .set('authorization', auth.admin!)
        .send({ partner_id: 'partner\u0000a', cert_sha256: 'ab'.repeat(32) });
      await expectRefused(res, 'partner_id', admin, 'request.refused', before);
    });
  });
});

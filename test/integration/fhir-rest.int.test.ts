import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit, type AuditInput } from '../../src/audit/append.ts';
import { SCOPE_AUDIT_READ } from '../../src/auth/scopes.ts';
import { inTransaction } from '../../src/db/pool.ts';
import { FHIR_OPERATIONS, FHIR_RESOURCES } from '../../plugins/routes/metadata.ts';
import { AUDIT_SEARCH_PARAMS, MAX_COUNT } from '../../src/audit/search.ts';
import { testClient } from '../helpers/auth.ts';
import { blindPatients } from '../../src/compliance/blind.ts';
import { messageBundle, startOutbound, type Outbound } from '../helpers/outbound.ts';
import { r4Errors } from '../helpers/r4-validator.ts';

let o: Outbound;
let auditor: string;
const server = () => o.gw.app.server;

const append = (n: number, type: AuditInput['type'] = 'intake.accepted') =>
  inTransaction(o.gw.app.ctx.pool, (c) =>
    appendAudit(
      c,
      Array.from({ length: n }, (_, i) => ({
        type,
        outcome: 'success' as const,
        agent: { type: 'client' as const, id: 'ehr-rest' },
        entity: [{ type: 'exchange', id: `ex-rest-${i}` }],
      })),
    ),
  );

beforeAll(async () => {
  o = await startOutbound({}, 1, { worker: false });
  auditor = await (await testClient(o.gw, { scopes: [SCOPE_AUDIT_READ] })).bearer();
  await append(3);
});
afterAll(async () => o?.close());

const get = (path: string) => request(server()).get(path).set('authorization', auditor);
const ids = (body: { entry?: Array<{ resource: { id: string } }> }) => (body.entry ?? []).map((e) => e.resource.id);
const link = (body: { link: Array<{ relation: string; url: string }> }, rel: string) =>
  body.link.find((l) => l.relation === rel)?.url;
const relative = (url: string) => url.slice(o.gw.config.baseUrl.length);
const errorCode = (body: { issue: Array<{ details?: { coding?: Array<{ code: string }> } }> }) =>
  body.issue[0]?.details?.coding?.[0]?.code;

async function refusalsSince(idx: number, type: string): Promise<Array<Record<string, unknown>>> {
  const { rows } = await o.gw.app.ctx.pool.query<{ entry: string }>(
    'SELECT entry FROM audit_log WHERE idx >= $1 AND type = $2 ORDER BY idx',
    [idx, type],
  );
  return rows.map((r) => JSON.parse(r.entry) as Record<string, unknown>);
}
const logSize = async () =>
  Number((await o.gw.app.ctx.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_log')).rows[0]!.n);

describe('formats and versions not served: 406 and 415', () => {
  it.each([
    ['Accept: application/fhir+xml', '/fhir/metadata', { accept: 'application/fhir+xml' }],
    ['Accept: application/xml', '/fhir/AuditEvent', { accept: 'application/xml' }],
    ['Accept with fhirVersion=3.0', '/fhir/AuditEvent', { accept: 'application/fhir+json; fhirVersion=3.0' }],
    ['_format=xml', '/fhir/AuditEvent?_format=xml', {}],
    ['_format=application/fhir+xml', '/fhir/metadata?_format=application%2Ffhir%2Bxml', {}],
    ['_format with fhirVersion=5.0', '/fhir/AuditEvent/1?_format=application%2Ffhir%2Bjson%3B%20fhirVersion%3D5.0', {}],
  ])('%s → 406 OperationOutcome', async (_name, path, headers) => {
    const res = await get(path).set(headers);
    expect(res.status).toBe(406);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(errorCode(res.body)).toBe('NOT_ACCEPTABLE');
    expect(r4Errors(res.body)).toEqual([]);
  });

  it.each([
    ['no Accept', {}, ''],
    ['Accept: */*', { accept: '*/*' }, ''],
    ['a browser Accept', { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' }, ''],
    ['Accept with fhirVersion=4.0', { accept: 'application/fhir+json; fhirVersion=4.0' }, ''],
    ['_format=json', {}, '?_format=json'],
    ['_format=application/json over an XML Accept', { accept: 'application/fhir+xml' }, '?_format=application%2Fjson'],
  ])('%s → 200 JSON', async (_name, headers, query) => {
    const res = await get(`/fhir/metadata${query}`).set(headers);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
  });

  it('a 406 on the audit search is audited as request.refused, naming the caller', async () => {
    const from = await logSize();
    expect((await get('/fhir/AuditEvent').set('accept', 'application/fhir+xml')).status).toBe(406);
    const refusals = await refusalsSince(from, 'request.refused');
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({ detail: { reason: 'NOT_ACCEPTABLE', status: 406, route: '/fhir/AuditEvent' } });
  });

  it('Content-Type: application/fhir+xml → 415 on intake and on POST _search, audited', async () => {
    const from = await logSize();
    for (const path of ['/exchanges', '/fhir/$process-message']) {
      const res = await request(server())
        .post(path)
        .set('authorization', o.ehrAuth)
        .set('content-type', 'application/fhir+xml')
        .send('<Bundle xmlns="http://hl7.org/fhir"/>');
      expect(res.status, path).toBe(415);
      expect(res.body.resourceType).toBe('OperationOutcome');
    }
    const search = await request(server())
      .post('/fhir/AuditEvent/_search')
      .set('authorization', auditor)
      .set('content-type', 'application/fhir+xml')
      .send('<Parameters/>');
    expect(search.status).toBe(415);
    expect(await refusalsSince(from, 'intake.refused')).toHaveLength(2);
    expect(await refusalsSince(from, 'request.refused')).toHaveLength(1);
  });

  it('a body declared as another FHIR version → 415, audited as intake.refused; 4.0 is accepted', async () => {
    const from = await logSize();
    const send = (type: string) =>
      request(server())
        .post('/fhir/$process-message')
        .set('authorization', o.ehrAuth)
        .set('content-type', type)
        .send(messageBundle([o.recipients[0]!.id]));
    const refused = await send('application/fhir+json; fhirVersion=3.0');
    expect(refused.status).toBe(415);
    expect(errorCode(refused.body)).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(await refusalsSince(from, 'intake.refused')).toHaveLength(1);
    expect((await send('application/fhir+json; fhirVersion=4.0')).status).toBe(202);
  });
});

describe('405 with Allow for a FHIR path with another method', () => {
  it.each([
    ['DELETE', '/fhir/AuditEvent/1', 'GET, HEAD'],
    ['PUT', '/fhir/metadata', 'GET, HEAD'],
    ['GET', '/fhir/$process-message', 'POST'],
    ['GET', '/fhir/%24process-message', 'POST'],
    ['DELETE', '/fhir/AuditEvent', 'GET, HEAD'],
    ['DELETE', '/fhir/AuditEvent/_search', 'GET, HEAD, POST'],
    ['GET', '/exchanges', 'POST'],
  ])('%s %s, anonymous → 405, Allow: %s', async (method, path, allow) => {
    const res = await request(server())[method.toLowerCase() as 'get'](path);
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe(allow);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(errorCode(res.body)).toBe('METHOD_NOT_ALLOWED');
    expect(r4Errors(res.body)).toEqual([]);
  });

  it('paths that are not FHIR routes keep their 404, and so do unknown FHIR paths', async () => {
    for (const [method, path] of [
      ['DELETE', '/admin/partners'],
      ['PUT', '/audit/checkpoint'],
      ['GET', '/fhir/Patient'],
      ['DELETE', '/fhir'],
    ] as const) {
      const res = await request(server())[method.toLowerCase() as 'get'](path);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.headers.allow).toBeUndefined();
    }
  });

  it('a known method on a FHIR route still needs its token (default deny intact)', async () => {
    expect((await request(server()).get('/fhir/AuditEvent/1')).status).toBe(401);
    expect((await request(server()).post('/fhir/AuditEvent/_search')).status).toBe(401);
  });
});

describe('Prefer: return on create-like interactions', () => {
  const submit = (prefer?: string) => {
    const r = request(server())
      .post(`/exchanges?recipient=${encodeURIComponent(o.recipients[0]!.id)}`)
      .set('authorization', o.ehrAuth)
      .set('content-type', 'application/fhir+json');
    if (prefer) r.set('prefer', prefer);
    return r.send(messageBundle([o.recipients[0]!.id]));
  };

  it('return=minimal: 202 with Location and no body', async () => {
    const res = await submit('return=minimal');
    expect(res.status).toBe(202);
    expect(res.headers.location).toMatch(/^\/exchanges\//);
    expect(res.headers['preference-applied']).toBe('return=minimal');
    expect(res.text).toBe('');
  });

  it.each(['return=OperationOutcome', 'return=representation', undefined])(
    '%s: 202 with Location and an informational OperationOutcome',
    async (prefer) => {
      const res = await submit(prefer);
      expect(res.status).toBe(202);
      expect(res.headers.location).toMatch(/^\/exchanges\//);
      expect(res.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ severity: 'information' }] });
      expect(res.headers['preference-applied']).toBe(prefer === 'return=OperationOutcome' ? prefer : undefined);
      expect(r4Errors(res.body)).toEqual([]);
    },
  );

  it('$process-message honours return=minimal too', async () => {
    const res = await request(server())
      .post('/fhir/$process-message')
      .set('authorization', o.ehrAuth)
      .set('content-type', 'application/fhir+json')
      .set('prefer', 'return=minimal')
      .send(messageBundle([o.recipients[0]!.id]));
    expect(res.status).toBe(202);
    expect(res.text).toBe('');
  });
});

describe('AuditEvent search', () => {
  it('handling=strict (and no Prefer) refuses an unknown parameter; lenient ignores it and the self link says so', async () => {
    for (const prefer of [undefined, 'handling=strict']) {
      const r = get('/fhir/AuditEvent?colour=red&subtype=intake.accepted');
      const res = await (prefer ? r.set('prefer', prefer) : r);
      expect(res.status).toBe(400);
      expect(res.body.issue[0].expression).toEqual(['colour']);
    }
    const res = await get('/fhir/AuditEvent?colour=red&subtype=intake.accepted').set('prefer', 'handling=lenient');
    expect(res.status).toBe(200);
    expect(link(res.body, 'self')).toBe(`${o.gw.config.baseUrl}/fhir/AuditEvent?subtype=intake.accepted`);
    expect(res.body.total).toBeGreaterThanOrEqual(3);
    // A bad value of a known parameter is still a 400 under lenient.
    expect((await get('/fhir/AuditEvent?outcome=3').set('prefer', 'handling=lenient')).status).toBe(400);
  });

  it('keyset paging: two events appended between page 1 and page 2 neither repeat nor leave a gap', async () => {
    const first = await get('/fhir/AuditEvent?subtype=key.destroyed&_count=2');
    expect(first.body.total).toBe(0);
    await append(5, 'key.destroyed');
    const page1 = await get('/fhir/AuditEvent?subtype=key.destroyed&_count=2');
    expect(page1.body.total).toBe(5);
    const next = link(page1.body, 'next')!;
    expect(next).toContain('_cursor=');
    expect(next).not.toContain('_offset');
    await append(2, 'key.destroyed');
    const page2 = await get(relative(next));
    const page3 = await get(relative(link(page2.body, 'next')!));
    expect(link(page3.body, 'next')).toBeUndefined();
    const seen = [...ids(page1.body), ...ids(page2.body), ...ids(page3.body)].map(Number);
    // The five that existed at page 1, newest first, each once; the two appended later are page 1's business.
    expect(seen).toHaveLength(5);
    expect(new Set(seen).size).toBe(5);
    expect(seen).toEqual([...seen].sort((a, b) => b - a));
    const all = await get('/fhir/AuditEvent?subtype=key.destroyed&_sort=date&_count=100');
    expect(all.body.total).toBe(7);
    expect(ids(all.body).map(Number).slice(0, 5)).toEqual([...seen].reverse());
  });

  it('_sort=date pages oldest first; -date (the default) newest first; any other _sort is 400', async () => {
    const asc = await get('/fhir/AuditEvent?_sort=date&_count=2');
    const asc2 = await get(relative(link(asc.body, 'next')!));
    const seen = [...ids(asc.body), ...ids(asc2.body)].map(Number);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(seen[0]).toBe(0);
    const desc = ids((await get('/fhir/AuditEvent?_sort=-date&_count=3')).body).map(Number);
    expect(desc).toEqual(ids((await get('/fhir/AuditEvent?_count=3')).body).map(Number));
    expect(desc).toEqual([...desc].sort((a, b) => b - a));
    for (const sort of ['_id', 'recorded', '-date,_id', '']) {
      const res = await get(`/fhir/AuditEvent?_sort=${encodeURIComponent(sort)}`);
      expect(res.status, sort).toBe(400);
      expect(res.body.issue[0].expression).toEqual(['_sort']);
    }
  });

  it(`_count above ${MAX_COUNT} is clamped (the self link shows it); 0 or not a number is 400`, async () => {
    const res = await get('/fhir/AuditEvent?_count=5000');
    expect(res.status).toBe(200);
    expect(link(res.body, 'self')).toContain(`_count=${MAX_COUNT}`);
    for (const c of ['0', '-1', 'ten']) expect((await get(`/fhir/AuditEvent?_count=${c}`)).status, c).toBe(400);
  });

  it('an empty searchset has no entry array', async () => {
    const res = await get('/fhir/AuditEvent?subtype=never.happened');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ resourceType: 'Bundle', type: 'searchset', total: 0 });
    expect(res.body).not.toHaveProperty('entry');
    expect(r4Errors(res.body)).toEqual([]);
  });

  it('POST _search with a form body answers like GET with the same parameters', async () => {
    const viaGet = await get('/fhir/AuditEvent?subtype=intake.accepted&_count=2');
    const viaPost = await request(server())
      .post('/fhir/AuditEvent/_search')
      .set('authorization', auditor)
      .type('form')
      .send('subtype=intake.accepted&_count=2');
    expect(viaPost.status).toBe(200);
    expect(viaPost.body).toEqual(viaGet.body);
    const mixed = await request(server())
      .post('/fhir/AuditEvent/_search?subtype=intake.accepted')
      .set('authorization', auditor)
      .type('form')
      .send('_count=2');
    expect(mixed.body).toEqual(viaGet.body);
  });

  it('POST _search refuses what GET refuses, and a JSON body', async () => {
    const post = (type: string, body: string) =>
      request(server())
        .post('/fhir/AuditEvent/_search')
        .set('authorization', auditor)
        .set('content-type', type)
        .send(body);
    expect((await post('application/x-www-form-urlencoded', 'colour=red')).status).toBe(400);
    expect((await post('application/x-www-form-urlencoded', '_format=xml')).status).toBe(406);
    expect((await post('application/x-www-form-urlencoded', 'subtype=a%00b')).status).toBe(400);
    expect((await post('application/fhir+json', '{"subtype":"intake.accepted"}')).status).toBe(415);
  });
});

describe('ETag and Last-Modified on reads', () => {
  it('GET /fhir/AuditEvent/{id}: ETag, Last-Modified; If-None-Match → 304', async () => {
    const res = await get('/fhir/AuditEvent/1');
    expect(res.status).toBe(200);
    const etag = res.headers.etag as string;
    expect(etag).toMatch(/^W\/"[\w-]+"$/);
    expect(new Date(res.headers['last-modified'] as string).getTime()).toBe(
      Math.floor(Date.parse(res.body.recorded) / 1000) * 1000,
    );
    const again = await get('/fhir/AuditEvent/1').set('if-none-match', etag);
    expect(again.status).toBe(304);
    expect(again.text).toBe('');
    expect((await get('/fhir/AuditEvent/1').set('if-none-match', `"other", ${etag}`)).status).toBe(304);
    expect((await get('/fhir/AuditEvent/2').set('if-none-match', etag)).status).toBe(200);
  });

  it('GET /fhir/metadata: ETag, Last-Modified; If-None-Match → 304', async () => {
    const res = await request(server()).get('/fhir/metadata');
    expect(res.headers.etag).toMatch(/^W\/"/);
    expect(res.headers['last-modified']).toBeDefined();
    const again = await request(server())
      .get('/fhir/metadata')
      .set('if-none-match', res.headers.etag as string);
    expect(again.status).toBe(304);
  });
});

/** Every route the app registered, read from Fastify's own route tree (printRoutes without common prefixes). */
function registeredRoutes(): Array<{ method: string; url: string }> {
  const stack: string[] = [];
  const out: Array<{ method: string; url: string }> = [];
  for (const line of o.gw.app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│ ]*)[├└]── (.*) \(([A-Z, ]+)\)$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    for (const method of m[3]!.split(', ')) out.push({ method, url: stack.join('') });
  }
  return out;
}

describe('CapabilityStatement', () => {
  it('every registered route under /fhir is a declared FHIR route, and each declared one is registered', () => {
    const key = (r: { method: string; url: string }) => `${r.method} ${r.url}`;
    // SMART discovery lives under the FHIR base but is OAuth metadata, not a FHIR interaction.
    const underFhir = registeredRoutes()
      .filter((r) => r.url.startsWith('/fhir') && !r.url.startsWith('/fhir/.well-known/'))
      .map(key)
      .sort();
    expect(underFhir).toContain('GET /fhir/AuditEvent/:id');
    expect(underFhir).toEqual(
      o.gw.app.fhirRoutes
        .routes()
        .filter((r) => r.url.startsWith('/fhir'))
        .map(key)
        .sort(),
    );
  });

  /** What each FHIR route is in CapabilityStatement terms. */
  function declaredByRoute(method: string, url: string): string | undefined {
    if (method === 'HEAD') return undefined;
    if (method === 'GET' && url === '/fhir/metadata') return 'capabilities';
    const op = /^\/fhir\/\$([\w-]+)$/.exec(url);
    if (method === 'POST' && op) return `operation ${op[1]}`;
    const instanceOp = /^\/fhir\/([A-Z]\w+)\/:id\/\$([\w-]+)$/.exec(url);
    if (method === 'GET' && instanceOp) return `${instanceOp[1]} operation ${instanceOp[2]}`;
    const m = /^\/fhir\/([A-Z]\w+)(\/:id|\/_search)?$/.exec(url);
    if (m && method === 'GET' && m[2] === '/:id') return `${m[1]} read`;
    if (m && method === 'PUT' && m[2] === '/:id') return `${m[1]} update`;
    if (m && method === 'DELETE' && m[2] === '/:id') return `${m[1]} delete`;
    if (m && method === 'POST' && !m[2]) return `${m[1]} create`;
    if (m && ((method === 'GET' && !m[2]) || (method === 'POST' && m[2] === '/_search'))) return `${m[1]} search-type`;
    return `unmapped ${method} ${url}`;
  }

  it('declares every FHIR interaction and operation the routes serve, and nothing else', async () => {
    const statement = (await request(server()).get('/fhir/metadata')).body;
    const declared = new Set<string>(['capabilities']);
    for (const r of statement.rest[0].resource) {
      for (const i of r.interaction) declared.add(`${r.type} ${i.code}`);
      for (const op of r.operation ?? []) declared.add(`${r.type} operation ${op.name}`);
    }
    for (const op of statement.rest[0].operation) declared.add(`operation ${op.name}`);
    const served = new Set(
      o.gw.app.fhirRoutes
        .routes()
        .filter((r) => r.url.startsWith('/fhir'))
        .map((r) => declaredByRoute(r.method, r.url))
        .filter((x): x is string => x !== undefined),
    );
    expect([...served].sort()).toEqual([...declared].sort());
    // Each read and search route exists for what is declared (both GET and POST _search for a search).
    const routes = new Set(o.gw.app.fhirRoutes.routes().map((r) => `${r.method} ${r.url}`));
    for (const r of FHIR_RESOURCES)
      for (const i of r.interactions) {
        if (i === 'read') expect(routes).toContain(`GET /fhir/${r.type}/:id`);
        else if (i === 'update') expect(routes).toContain(`PUT /fhir/${r.type}/:id`);
        else if (i === 'delete') expect(routes).toContain(`DELETE /fhir/${r.type}/:id`);
        else if (i === 'create') expect(routes).toContain(`POST /fhir/${r.type}`);
        else {
          expect(routes).toContain(`GET /fhir/${r.type}`);
          expect(routes).toContain(`POST /fhir/${r.type}/_search`);
        }
      }
    for (const op of FHIR_OPERATIONS) expect(routes).toContain(`POST /fhir/$${op.name}`);
  });

  it('declares exactly the AuditEvent search parameters that work', async () => {
    const statement = (await request(server()).get('/fhir/metadata')).body;
    const declared = statement.rest[0].resource
      .find((r: { type: string }) => r.type === 'AuditEvent')
      .searchParam.map((p: { name: string }) => p.name);
    expect(declared).toEqual(AUDIT_SEARCH_PARAMS.map((p) => p.name));
    // An entry naming a patient, blinded by this gateway's HSM as intake would.
    const patients = await blindPatients(o.gw.app.ctx, [{ system: 'urn:test:mrn', value: 'rest-1' }]);
    await inTransaction(o.gw.app.ctx.pool, (c) =>
      appendAudit(c, [{ type: 'inbox.accepted', outcome: 'success', agent: { type: 'partner', id: 'p' }, patients }]),
    );
    const sample: Record<string, string> = {
      date: 'ge2020',
      type: '110106',
      subtype: 'intake.accepted',
      outcome: '0',
      entity: 'ex-rest-0',
      agent: 'ehr-rest',
      'patient.identifier': 'urn:test:mrn|rest-1',
    };
    for (const name of declared) {
      const res = await get(`/fhir/AuditEvent?${name}=${encodeURIComponent(sample[name]!)}`);
      expect(res.status, name).toBe(200);
      expect(res.body.total, name).toBeGreaterThan(0);
    }
    // Undeclared parameters are refused (strict), so the list is complete.
    expect((await get('/fhir/AuditEvent?address=x')).status).toBe(400);
  });
});

describe('every resource emitted validates against R4', () => {
  it('CapabilityStatement, AuditEvents, searchsets and error OperationOutcomes have 0 errors', async () => {
    expect(r4Errors((await request(server()).get('/fhir/metadata')).body)).toEqual([]);
    const page = await get('/fhir/AuditEvent?_count=50&_sort=date');
    expect(r4Errors(page.body)).toEqual([]);
    for (const e of page.body.entry) expect(r4Errors(e.resource), e.resource.subtype[0].code).toEqual([]);
    expect(r4Errors((await get('/fhir/AuditEvent/0')).body)).toEqual([]);
    for (const path of ['/fhir/AuditEvent?_sort=x', '/fhir/AuditEvent/99999999', '/fhir/AuditEvent?colour=red'])
      expect(r4Errors((await get(path)).body), path).toEqual([]);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { flattenedVerify, importJWK, type JWK } from 'jose';
import { startTwoGateways, type TwoGateways } from '../helpers/two-gateways.ts';
import { messageBundle, waitFor } from '../helpers/outbound.ts';
import { testClient } from '../helpers/auth.ts';
import { DICOM_FIXTURES } from '../helpers/imaging.ts';
import { r4Errors } from '../helpers/r4-validator.ts';

/** Every array in `v` has at least one item (FHIR has no empty arrays); the paths of those that do not. */
function emptyArrays(v: unknown, path = '$'): string[] {
  if (Array.isArray(v)) return v.length === 0 ? [path] : v.flatMap((x, i) => emptyArrays(x, `${path}[${i}]`));
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => emptyArrays(x, `${path}.${k}`));
  return [];
}

/** A view must be valid R4 with no empty arrays. */
function expectValidR4(resource: unknown) {
  expect(r4Errors(resource)).toEqual([]);
  expect(emptyArrays(resource)).toEqual([]);
}

describe('FHIR views: an exchange as a Task, the inbox as a Provenance searchset, a Provenance carrying the signature', () => {
  let t: TwoGateways;
  beforeAll(async () => {
    t = await startTwoGateways();
  });
  afterAll(async () => t?.close());

  const get = async (gw: TwoGateways['a'], path: string, auth?: string) =>
    request(gw.gw.app.server)
      .get(path)
      .set('authorization', auth ?? (await gw.ehr.bearer()));

  it('an empty inbox is a searchset with no entry, valid R4', async () => {
    const { b } = t;
    const lonely = await testClient(b.gw, { scopes: ['system/*.read'], receivesFrom: [] });
    const res = await get(b, '/fhir/Provenance', await lonely.bearer());
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect(res.body).toEqual({
      resourceType: 'Bundle',
      type: 'searchset',
      link: [{ relation: 'self', url: `${b.gw.config.baseUrl}/fhir/Provenance?_count=100` }],
    });
    expectValidR4(res.body);
  });

  it('an empty AuditEvent search has no entry either', async () => {
    const { b } = t;
    const admin = await testClient(b.gw, { scopes: ['system/AuditEvent.read'] });
    const res = await get(b, `/fhir/AuditEvent?entity=${randomUUID()}`, await admin.bearer());
    expect(res.status).toBe(200);
    expect(res.body.entry).toBeUndefined();
    expect(emptyArrays(res.body)).toEqual([]);
  });

  it('A sends a message to B: A shows the exchange as a Task, B the received bundle as a Provenance whose signature is the verified JWS', async () => {
    const { a, b } = t;
    const bundle = messageBundle([b.gw.config.org], 1_000, 'views');
    const sent = await request(a.gw.app.server)
      .post('/fhir/$process-message')
      .set({ authorization: await a.ehr.bearer(), 'content-type': 'application/fhir+json' })
      .send(bundle)
      .expect(202);
    const id = (sent.headers.location as string).split('/').pop()!;

    const task = await waitFor('the Task to complete', async () => {
      const res = await get(a, `/fhir/Task/${id}`);
      return res.status === 200 && res.body.status !== 'in-progress' ? res : undefined;
    });
    expect(task.headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect(task.body).toMatchObject({
      resourceType: 'Task',
      id,
      status: 'completed',
      intent: 'order',
      businessStatus: { text: '1 delivered' },
      output: [
        {
          type: { coding: [{ system: 'urn:fhir-gateway:delivery-state', code: 'delivered' }] },
          valueReference: { type: 'Organization', identifier: { value: b.gw.config.org } },
        },
      ],
    });
    expectValidR4(task.body);
    // The JSON view is unchanged for current clients.
    expect((await get(a, `/exchanges/${id}`)).body).toMatchObject({ id, recipients: [{ state: 'delivered' }] });
    // Another client's exchange is not found, like /exchanges/{id}.
    const stranger = await testClient(a.gw, { scopes: ['system/*.read'] });
    expect((await get(a, `/fhir/Task/${id}`, await stranger.bearer())).status).toBe(404);

    const list = await get(b, '/fhir/Provenance?_count=1');
    expect(list.status).toBe(200);
    expectValidR4(list.body);
    expect(list.body.entry).toHaveLength(1);
    const listed = list.body.entry[0];
    expect(listed.fullUrl).toBe(`${b.gw.config.baseUrl}/fhir/Provenance/${listed.resource.id}`);
    // POST _search with the parameters in a form body answers the same searchset.
    const posted = await request(b.gw.app.server)
      .post('/fhir/Provenance/_search')
      .set('authorization', await b.ehr.bearer())
      .type('form')
      .send('_count=1');
    expect(posted.status).toBe(200);
    expect(posted.body).toEqual(list.body);
    expect(listed.resource.signature).toBeUndefined();
    const next = list.body.link.find((l: { relation: string }) => l.relation === 'next');
    expect(next.url).toMatch(/\/fhir\/Provenance\?_count=1&before=/);

    const prov = await get(b, `/fhir/Provenance/${listed.resource.id}`);
    expect(prov.status).toBe(200);
    expect(prov.headers['content-type']).toMatch(/^application\/fhir\+json/);
    expectValidR4(prov.body);
    const who = { type: 'Organization', identifier: { system: 'urn:fhir-gateway:partner', value: a.gw.config.org } };
    expect(prov.body).toMatchObject({
      resourceType: 'Provenance',
      target: [{ reference: `${b.gw.config.baseUrl}/inbox/messages/${listed.resource.id}`, type: 'Bundle' }],
      agent: [{ who }],
      signature: [{ who, sigFormat: 'application/jose+json', targetFormat: 'application/fhir+json' }],
    });
    // The signature is A's dual-signed JWS (protocol v2): each signature verifies with A's published key
    // of its alg, and its content is the bundle B hands over.
    const jws = Buffer.from(prov.body.signature[0].data, 'base64').toString('utf8');
    const aJwks = (await (await fetch(`${a.gw.url}/.well-known/jwks.json`)).json()) as {
      keys: Array<JWK & { kid: string }>;
    };
    const doc = JSON.parse(jws) as { payload: string; signatures: Array<{ protected: string; signature: string }> };
    expect(doc.signatures.map((x) => JSON.parse(Buffer.from(x.protected, 'base64url').toString()).alg)).toEqual([
      'ES256',
      'ML-DSA-65',
    ]);
    let payload: Uint8Array = new Uint8Array();
    for (const one of doc.signatures) {
      const h = JSON.parse(Buffer.from(one.protected, 'base64url').toString()) as { kid: string; alg: string };
      ({ payload } = await flattenedVerify(
        { payload: doc.payload, ...one },
        await importJWK(
          aJwks.keys.find((k) => k.kid === h.kid)!,
          h.alg,
        ),
      ));
    }
    const claims = JSON.parse(Buffer.from(payload).toString());
    expect(claims).toMatchObject({ iss: a.gw.config.org, aud: b.gw.config.org });
    const content = await get(b, `/inbox/messages/${listed.resource.id}`);
    expect(content.text).toBe(bundle);
    expect(claims.content).toEqual(JSON.parse(bundle));
    expect(prov.body.signature[0].when).toBe(new Date(claims.iat * 1000).toISOString());
  });

  it('an imaging message: its manifest is served as application/json (not a FHIR resource), and its Provenance validates', async () => {
    const { a, b } = t;
    const dicom = readFileSync(DICOM_FIXTURES[0]!);
    const sent = await request(a.gw.app.server)
      .post(`/imaging?recipient=${encodeURIComponent(b.gw.config.org)}`)
      .set({ authorization: await a.ehr.bearer(), 'content-type': 'application/dicom' })
      .send(dicom)
      .expect(202);
    const view = await waitFor('the imaging delivery', async () => {
      const res = await get(a, sent.headers['content-location'] as string);
      return res.status === 200 && res.body.recipients[0].state === 'delivered' ? res.body : undefined;
    });
    const list = await get(b, '/fhir/Provenance?_count=1000');
    const delivery = view.recipients[0].delivery as string;
    const entry = list.body.entry.find((e: { resource: { activity: { text: string } } }) =>
      e.resource.activity.text.includes(delivery),
    );
    expect(entry).toBeDefined();
    const manifest = await get(b, `/inbox/messages/${entry.resource.id}`);
    expect(manifest.status).toBe(200);
    expect(manifest.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(manifest.text)).toMatchObject({
      length: dicom.length,
      imagingStudy: { resourceType: 'ImagingStudy' },
    });
    const prov = await get(b, `/fhir/Provenance/${entry.resource.id}`);
    expect(prov.status).toBe(200);
    expect(prov.body.signature[0].targetFormat).toBe('application/dicom');
    expectValidR4(prov.body);
  });

  it('refuses a bad Provenance search value with a 4xx OperationOutcome, and an unknown id with 404', async () => {
    const { b } = t;
    const bad = await get(b, '/fhir/Provenance?before=yesterday');
    expect(bad.status).toBe(400);
    expect(bad.body.resourceType).toBe('OperationOutcome');
    expect((await get(b, `/fhir/Provenance/${randomUUID()}`)).status).toBe(404);
    expect((await get(b, '/fhir/Task/not-a-uuid')).status).toBe(404);
  });
});

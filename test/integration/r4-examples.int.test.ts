import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXCHANGE_BUNDLE_TYPES } from '../../src/fhir/bundle.ts';
import { r4Errors } from '../helpers/r4-validator.ts';
import { countRows, startOutbound, type Outbound } from '../helpers/outbound.ts';

/**
 * The official HL7 R4 examples (hl7.fhir.r4.examples, CC0) through intake,
 * in process (app.inject): every example Bundle of an exchanged type that
 * the R4 validator finds valid is accepted as it is, and again as the focus
 * of a message; so is every 25th other example (by file name), wrapped in a
 * collection. The largest Bundle is 35 MB, so BODY_LIMIT is raised.
 */
const DIR = join(import.meta.dirname, '../../node_modules/hl7.fhir.r4.examples');
const files = readdirSync(DIR)
  .filter((f) => f.endsWith('.json') && f !== 'package.json')
  .sort();
const read = (f: string) => readFileSync(join(DIR, f), 'utf8');
const uuid = (n: number) => `urn:uuid:00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

// The example Bundles the validator refuses, and why: R4 faults in the examples themselves.
const INVALID_EXAMPLES: Record<string, string> = {
  'Bundle-dataelements.json': 'bdl-7: entries repeat a fullUrl with the same (no) meta.versionId',
  'Bundle-v2-valuesets.json': 'codes with spaces and a blank code, which the code type forbids',
  // A RESTful fullUrl SHALL end with the resource's id: .../Patient/pat12 carries Patient pat2.
  'Bundle-10bb101f-a121-4264-a920-67be9cb82c74.json': 'entry[2].fullUrl names Patient/pat12 for Patient pat2',
  'Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json': 'entry[3].fullUrl names Patient/pat12 for Patient pat2',
  'Bundle-lri-example.json': 'fullUrls .../Observation/lri-gramstain1 carry Observation gramstain1, and so on',
};
const MESSAGE_EXAMPLES = [
  'Bundle-10bb101f-a121-4264-a920-67be9cb82c74.json',
  'Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json',
];

const bundles = files
  .filter((f) => f.startsWith('Bundle-'))
  .map((f) => ({ file: f, text: read(f) }))
  .map((b) => ({ ...b, json: JSON.parse(b.text) as Record<string, unknown> }))
  .filter((b) => (EXCHANGE_BUNDLE_TYPES as readonly string[]).includes(b.json.type as string));
const others = files.filter((f) => !f.startsWith('Bundle-')).filter((_, i) => i % 25 === 0);

describe('the HL7 R4 example Bundles are accepted', () => {
  let o: Outbound;
  let partner: string;
  beforeAll(async () => {
    o = await startOutbound({ BODY_LIMIT: String(64 * 1024 * 1024), JSON_MAX_DEPTH: '128' }, 1, { worker: false });
    partner = o.recipients[0]!.id;
  });
  afterAll(async () => o?.close());

  const post = (url: string, payload: string) =>
    o.gw.app.inject({
      method: 'POST',
      url,
      headers: { authorization: o.ehrAuth, 'content-type': 'application/fhir+json' },
      payload,
    });

  const asMessageFocus = (focus: unknown) =>
    JSON.stringify({
      resourceType: 'Bundle',
      type: 'message',
      entry: [
        {
          fullUrl: uuid(1),
          resource: {
            resourceType: 'MessageHeader',
            eventCoding: { system: 'urn:example:events', code: 'record' },
            source: { endpoint: 'urn:example:ehr' },
            destination: [{ endpoint: `${partner}/inbox`, receiver: { identifier: { value: partner } } }],
            focus: [{ reference: uuid(2) }],
          },
        },
        { fullUrl: uuid(2), resource: focus },
      ],
    });

  it('accepts each example Bundle the validator finds valid on POST /exchanges, and each as the focus of a message', async () => {
    expect(bundles.length).toBe(39);
    const before = (await countRows(o)).exchanges ?? 0;
    const refused: string[] = [];
    for (const b of bundles) {
      const plain = await post(`/exchanges?recipient=${encodeURIComponent(partner)}`, b.text);
      if (plain.statusCode === 422 && b.file in INVALID_EXAMPLES) {
        refused.push(b.file);
        continue;
      }
      expect(plain.statusCode, `${b.file}: ${plain.body.slice(0, 400)}`).toBe(202);
      const wrapped = await post('/fhir/$process-message', asMessageFocus(b.json));
      expect(wrapped.statusCode, `${b.file} as a message focus: ${wrapped.body.slice(0, 400)}`).toBe(202);
    }
    // The refused ones are exactly those listed, each of them invalid R4.
    expect(refused.sort()).toEqual(Object.keys(INVALID_EXAMPLES).sort());
    for (const f of refused) expect(r4Errors(bundles.find((b) => b.file === f)!.json), f).not.toEqual([]);
    expect(((await countRows(o)).exchanges ?? 0) - before).toBe(2 * (bundles.length - refused.length));
  }, 300_000);

  it('accepts both message examples (no MessageHeader.destination) once their one fullUrl names its resource', async () => {
    for (const file of MESSAGE_EXAMPLES) {
      const b = bundles.find((x) => x.file === file)!.json as { entry: Array<{ fullUrl: string }> };
      const wrong = b.entry.findIndex((e) => e.fullUrl.endsWith('/Patient/pat12'));
      const refused = await post(`/exchanges?recipient=${encodeURIComponent(partner)}`, JSON.stringify(b));
      expect(refused.statusCode, file).toBe(422);
      expect(refused.json().issue.map((i: { expression: string[] }) => i.expression[0])).toEqual([
        `Bundle.entry[${wrong}].fullUrl`,
      ]);
      const fixed = structuredClone(b);
      fixed.entry[wrong]!.fullUrl = fixed.entry[wrong]!.fullUrl.replace(/pat12$/, 'pat2');
      expect(r4Errors(fixed)).toEqual([]);
      const plain = await post(`/exchanges?recipient=${encodeURIComponent(partner)}`, JSON.stringify(fixed));
      expect(plain.statusCode, `${file}: ${plain.body.slice(0, 400)}`).toBe(202);
      const wrapped = await post('/fhir/$process-message', asMessageFocus(fixed));
      expect(wrapped.statusCode, `${file} as a focus: ${wrapped.body.slice(0, 400)}`).toBe(202);
      // On $process-message itself it has no destination: the gateway cannot route it, and says where to send it.
      const unrouted = await post('/fhir/$process-message', JSON.stringify(fixed));
      expect(unrouted.statusCode).toBe(400);
      expect(unrouted.json().issue[0].expression).toEqual(['Bundle.entry[0].resource.destination']);
    }
  });

  it('accepts every 25th other example resource that the validator finds valid, in a collection', async () => {
    let sent = 0;
    for (const f of others) {
      const resource = JSON.parse(read(f)) as Record<string, unknown>;
      const collection = { resourceType: 'Bundle', type: 'collection', entry: [{ fullUrl: uuid(3), resource }] };
      if (r4Errors(collection).length) continue;
      const res = await post(`/exchanges?recipient=${encodeURIComponent(partner)}`, JSON.stringify(collection));
      expect(res.statusCode, `${f}: ${res.body.slice(0, 400)}`).toBe(202);
      sent++;
    }
    expect(sent).toBeGreaterThanOrEqual(others.length * 0.9);
  }, 120_000);
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countRows, startOutbound, type Outbound } from '../helpers/outbound.ts';

/**
 * A corpus of invalid Bundles, each refused at intake with 422 INVALID_FHIR,
 * the IssueType of its fault and the FHIRPath of the element, nothing
 * written, and the refusal audited (codes only).
 */
type Json = Record<string, unknown>;
const u = (n: number) => `urn:uuid:00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const patient = (extra: Json = {}) => ({ resourceType: 'Patient', name: [{ family: 'Doe' }], ...extra });
const observation = (extra: Json = {}) => ({
  resourceType: 'Observation',
  status: 'final',
  code: { text: 'x' },
  ...extra,
});
const collection = (entry: unknown[], extra: Json = {}) => ({
  resourceType: 'Bundle',
  type: 'collection',
  entry,
  ...extra,
});
const one = (resource: unknown, extra: Json = {}) => collection([{ fullUrl: u(1), resource, ...extra }]);
const composition = {
  resourceType: 'Composition',
  status: 'final',
  type: { text: 'note' },
  date: '2026-01-01',
  author: [{ display: 'a' }],
  title: 't',
};
const documentBundle = (extra: Json = {}, first: unknown = composition) => ({
  resourceType: 'Bundle',
  type: 'document',
  identifier: { system: 'urn:ietf:rfc:3986', value: u(90) },
  timestamp: '2026-01-01T00:00:00Z',
  entry: [{ fullUrl: u(1), resource: first }],
  ...extra,
});
const transaction = (entry: unknown[]) => ({ resourceType: 'Bundle', type: 'transaction', entry });
const header = {
  resourceType: 'MessageHeader',
  eventCoding: { code: 'x' },
  source: { endpoint: 'urn:a' },
  focus: [{ reference: u(2) }],
};

// [case, body, IssueType, element]
const CASES: Array<[string, unknown, string, string]> = [
  ['bdl-1: total outside a searchset', collection([], { total: 1 }), 'invariant', 'Bundle'],
  [
    'bdl-2: entry.search outside a searchset',
    collection([{ fullUrl: u(1), resource: patient(), search: { mode: 'match' } }]),
    'invariant',
    'Bundle',
  ],
  [
    'bdl-3: entry.request in a collection',
    collection([{ fullUrl: u(1), resource: patient(), request: { method: 'POST', url: 'Patient' } }]),
    'invariant',
    'Bundle',
  ],
  [
    'bdl-3: a transaction entry without request',
    transaction([{ fullUrl: u(1), resource: patient() }]),
    'invariant',
    'Bundle',
  ],
  [
    'bdl-5: an entry without resource, request or response',
    collection([{ fullUrl: u(1) }]),
    'invariant',
    'Bundle.entry[0]',
  ],
  [
    'bdl-7: a repeated fullUrl without versions',
    collection([
      { fullUrl: u(1), resource: patient() },
      { fullUrl: u(1), resource: patient() },
    ]),
    'invariant',
    'Bundle.entry[1].fullUrl',
  ],
  [
    'bdl-8: a version-specific fullUrl',
    one(patient({ id: '1' }), { fullUrl: 'https://x.example/fhir/Patient/1/_history/2' }),
    'invariant',
    'Bundle.entry[0]',
  ],
  ['bdl-9: a document without identifier', documentBundle({ identifier: undefined }), 'invariant', 'Bundle'],
  ['bdl-10: a document without timestamp', documentBundle({ timestamp: undefined }), 'invariant', 'Bundle'],
  ['bdl-11: a document not starting with a Composition', documentBundle({}, patient()), 'invariant', 'Bundle'],
  [
    'bdl-12: a message not starting with a MessageHeader',
    { resourceType: 'Bundle', type: 'message', entry: [{ fullUrl: u(1), resource: patient() }] },
    'invariant',
    'Bundle',
  ],
  ['resourceType Foo', one({ resourceType: 'Foo' }), 'structure', 'Bundle.entry[0].resource.resourceType'],
  ['a resource without resourceType', one({ id: 'a' }), 'structure', 'Bundle.entry[0].resource.resourceType'],
  [
    'gender outside its required value set',
    one(patient({ gender: 'frog' })),
    'code-invalid',
    'Bundle.entry[0].resource.gender',
  ],
  ['Bundle.type outside its value set', { resourceType: 'Bundle', type: 'letter' }, 'code-invalid', 'Bundle.type'],
  [
    'an HTTP verb outside its value set',
    transaction([{ fullUrl: u(1), resource: patient(), request: { method: 'FETCH', url: 'Patient' } }]),
    'code-invalid',
    'Bundle.entry[0].request.method',
  ],
  [
    'Observation.status outside its value set',
    one(observation({ status: 'done' })),
    'code-invalid',
    'Bundle.entry[0].resource.status',
  ],
  [
    'a Quantity comparator outside its value set',
    one(observation({ valueQuantity: { value: 1, comparator: '~' } })),
    'code-invalid',
    'Bundle.entry[0].resource.value.comparator',
  ],
  ['February 30', one(patient({ birthDate: '2026-02-30' })), 'value', 'Bundle.entry[0].resource.birthDate'],
  ['month 13', one(observation({ effectiveDateTime: '2026-13-01' })), 'value', 'Bundle.entry[0].resource.effective'],
  [
    'an instant on 29 February of a common year',
    one(observation({ issued: '2025-02-29T10:00:00Z' })),
    'value',
    'Bundle.entry[0].resource.issued',
  ],
  ['an unknown element', one(patient({ colour: 'blue' })), 'structure', 'Bundle.entry[0].resource.colour'],
  ['null', one(patient({ name: null })), 'structure', 'Bundle.entry[0].resource.name'],
  [
    'a scalar where an array is required',
    one(patient({ name: { family: 'x' } })),
    'structure',
    'Bundle.entry[0].resource.name',
  ],
  [
    'an array where a single value is required',
    one(patient({ gender: ['male'] })),
    'structure',
    'Bundle.entry[0].resource.gender',
  ],
  ['id ""', one(patient({ id: '' })), 'value', 'Bundle.entry[0].resource.id'],
  ['an id with a space', one(patient({ id: 'a b' })), 'value', 'Bundle.entry[0].resource.id'],
  ['a string for a boolean', one(patient({ active: 'yes' })), 'structure', 'Bundle.entry[0].resource.active'],
  ['an empty object', one(patient({ maritalStatus: {} })), 'structure', 'Bundle.entry[0].resource.maritalStatus'],
  [
    'a missing required element',
    one({ resourceType: 'Observation', code: { text: 'x' } }),
    'required',
    'Bundle.entry[0].resource.status',
  ],
  [
    'a fullUrl that disagrees with the resource id',
    one(patient({ id: '1' }), { fullUrl: 'https://x.example/fhir/Patient/2' }),
    'invariant',
    'Bundle.entry[0].fullUrl',
  ],
  [
    'a fullUrl that names another resource type',
    one(patient({ id: '1' }), { fullUrl: 'https://x.example/fhir/Observation/1' }),
    'invariant',
    'Bundle.entry[0].fullUrl',
  ],
  ['a relative fullUrl', one(patient(), { fullUrl: 'Patient/1' }), 'value', 'Bundle.entry[0].fullUrl'],
  [
    'ext-1: an extension without value or extensions',
    one(patient({ extension: [{ url: 'urn:x' }] })),
    'invariant',
    'Bundle.entry[0].resource.extension[0]',
  ],
  [
    'cpt-2: a ContactPoint value without system',
    one(patient({ telecom: [{ value: '555' }] })),
    'invariant',
    'Bundle.entry[0].resource.telecom[0]',
  ],
  [
    'dom-2: a contained resource with contained resources',
    one(
      patient({
        contained: [
          { resourceType: 'Patient', id: 'p', contained: [{ resourceType: 'Basic', id: 'b', code: { text: 'x' } }] },
        ],
      }),
    ),
    'invariant',
    'Bundle.entry[0].resource',
  ],
  [
    'an unresolvable urn:uuid reference',
    one(observation({ subject: { reference: u(9) } })),
    'invariant',
    'Bundle.entry[0].resource.subject.reference',
  ],
  [
    'a nested Bundle whose references point at the outer Bundle',
    {
      resourceType: 'Bundle',
      type: 'message',
      entry: [
        { fullUrl: u(1), resource: { ...header, destination: [{ endpoint: 'https://b.example/inbox' }] } },
        {
          fullUrl: u(2),
          resource: documentBundle({
            entry: [{ fullUrl: u(3), resource: { ...composition, subject: { reference: u(2) } } }],
          }),
        },
      ],
    },
    'invariant',
    'Bundle.entry[1].resource.entry[0].resource.subject.reference',
  ],
  [
    'an invalid resource inside a nested Bundle',
    collection([{ fullUrl: u(1), resource: collection([{ fullUrl: u(2), resource: patient({ gender: 'x' }) }]) }]),
    'code-invalid',
    'Bundle.entry[0].resource.entry[0].resource.gender',
  ],
  [
    'a searchset, which is not exchanged',
    { resourceType: 'Bundle', type: 'searchset' },
    'not-supported',
    'Bundle.type',
  ],
];

describe('intake refuses invalid R4 Bundles with 422, the IssueType and the element', () => {
  let o: Outbound;
  beforeAll(async () => {
    o = await startOutbound({}, 1, { worker: false });
  });
  afterAll(async () => o?.close());

  const refusals = async () =>
    Number(
      (
        await o.gw.app.ctx.pool.query(
          `SELECT count(*) AS n FROM audit_log WHERE type = 'intake.refused' AND entry::jsonb #>> '{detail,code}' = 'INVALID_FHIR'`,
        )
      ).rows[0].n,
    );

  it('has at least 30 cases', () => expect(CASES.length).toBeGreaterThanOrEqual(30));

  it.each(CASES)('refuses %s', async (_name, body, type, expression) => {
    const [before, audited] = [await countRows(o), await refusals()];
    const res = await o.gw.app.inject({
      method: 'POST',
      url: `/exchanges?recipient=${encodeURIComponent(o.recipients[0]!.id)}`,
      headers: { authorization: o.ehrAuth, 'content-type': 'application/fhir+json' },
      payload: JSON.stringify(body),
    });
    expect(res.statusCode, res.body).toBe(422);
    const outcome = res.json();
    expect(outcome.resourceType).toBe('OperationOutcome');
    const issues = outcome.issue.map((i: { code: string; expression: string[] }) => `${i.code} ${i.expression[0]}`);
    expect(issues).toContain(`${type} ${expression}`);
    for (const i of outcome.issue) expect(i.details.coding[0].code).toBe('INVALID_FHIR');
    expect(await countRows(o)).toEqual(before);
    expect(await refusals()).toBe(audited + 1);
  });
});

import { describe, expect, it } from 'vitest';
import { r4Issues } from '../../src/fhir/r4-validate.ts';

type Json = Record<string, unknown>;
const u = (n: number) => `urn:uuid:00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const inCollection = (resource: Json) => ({
  resourceType: 'Bundle',
  type: 'collection',
  entry: [{ fullUrl: u(1), resource }],
});
const observation = (extra: Json) => ({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, ...extra });
const issues = (resource: Json) => r4Issues(inCollection(resource)).map((i) => `${i.type} ${i.expression?.[0]}`);
const at = (path: string) => `Bundle.entry[0].resource.${path}`;

/** R4 JSON the two-walk validator let through, and the one walk refuses. */
describe('the one typed walk: R4 JSON shapes the former validator accepted', () => {
  it.each<[string, Json, string]>([
    ['a number where a CodeableConcept is', observation({ code: 5 }), `structure ${at('code')}`],
    ['true where a CodeableConcept is', observation({ code: true }), `structure ${at('code')}`],
    ['an object where a code is', { resourceType: 'Patient', gender: { id: 'x' } }, `structure ${at('gender')}`],
    [
      'a type value[x] does not have, beside one it has',
      observation({ valueString: 'a', valueFoo: 1 }),
      `structure ${at('valueFoo')}`,
    ],
    [
      'two types of one value[x]',
      observation({ valueString: 'a', valueBoolean: true }),
      `structure ${at('valueBoolean')}`,
    ],
    [
      'an invariant broken inside a primitive extension',
      {
        resourceType: 'Patient',
        birthDate: '2020-01-01',
        _birthDate: { extension: [{ url: 'urn:x', valuePeriod: { start: '2020-02-01', end: '2020-01-01' } }] },
      },
      `invariant ${at('birthDate.extension[0].value')}`,
    ],
    [
      'an unknown member in a primitive extension',
      { resourceType: 'Patient', birthDate: '2020-01-01', _birthDate: { constructor: 1 } },
      `structure ${at('birthDate.constructor')}`,
    ],
    [
      'a resourceType in a data type',
      observation({ code: { resourceType: 'Patient', text: 'x' } }),
      `structure ${at('code.resourceType')}`,
    ],
    [
      'an Age not in UCUM (age-1 reads %ucum)',
      {
        resourceType: 'Condition',
        subject: { display: 'p' },
        onsetAge: { value: 5, unit: 'a', system: 'http://example.org/units', code: 'a' },
      },
      `invariant ${at('onset')}`,
    ],
    ['an empty array where R4 has one value', { resourceType: 'Patient', gender: [] }, `structure ${at('gender')}`],
    [
      'a _name on an element that is not primitive',
      { resourceType: 'Patient', _maritalStatus: { id: 'x' }, maritalStatus: { text: 'x' } },
      `structure ${at('_maritalStatus')}`,
    ],
  ])('refuses %s', (_name, resource, expected) => {
    expect(issues(resource)).toContain(expected);
  });

  it('accepts a primitive array with extensions on some of its values, as R4 JSON writes them', () => {
    const ext = { extension: [{ url: 'urn:x', valueString: 'y' }] };
    expect(issues({ resourceType: 'Patient', name: [{ given: ['a', null], _given: [null, ext] }] })).toEqual([]);
    expect(issues({ resourceType: 'Patient', name: [{ given: ['a', null], _given: [null, null] }] })).toEqual([
      `structure ${at('name[0].given[1]')}`,
      `structure ${at('name[0]._given[1]')}`,
    ]);
  });
});

import { describe, expect, it } from 'vitest';
import { checkBundle, messageDestinations, validateBundleForIntake } from '../../src/fhir/bundle.ts';
import { GatewayError } from '../../src/errors.ts';

const header = (extra: Record<string, unknown> = {}) => ({
  resourceType: 'MessageHeader',
  eventCoding: { code: 'x' },
  source: { endpoint: 'urn:a' },
  destination: [{ endpoint: 'https://b.example/inbox', receiver: { identifier: { value: 'org-b' } } }],
  ...extra,
});
const msg = (entries: unknown[]) => ({ resourceType: 'Bundle', type: 'message', entry: entries });
const u = (n: number) => `urn:uuid:00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const basic = { resourceType: 'Basic', code: { text: 'note' } };
const observation = (extra: Record<string, unknown>) => ({
  resourceType: 'Observation',
  status: 'final',
  code: { text: 'x' },
  ...extra,
});
const collection = (entry: unknown) => ({ resourceType: 'Bundle', type: 'collection', entry });
const composition = {
  resourceType: 'Composition',
  status: 'final',
  type: { text: 'note' },
  date: '2026-01-01',
  author: [{ display: 'a' }],
  title: 't',
};
const documentOf = (entry: unknown[]) => ({
  resourceType: 'Bundle',
  type: 'document',
  identifier: { system: 'urn:ietf:rfc:3986', value: u(99) },
  timestamp: '2026-01-01T00:00:00Z',
  entry,
});

/** The issues of a refused body, each as `type expression`. */
function refusal(body: unknown): string[] {
  try {
    checkBundle(body);
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    const e = err as GatewayError;
    expect(e.code).toBe('INVALID_FHIR');
    expect(e.status).toBe(422);
    return (e.issues ?? []).map((i) => `${i.type} ${i.expression?.join(',')}`);
  }
  throw new Error('accepted');
}

describe('checkBundle: R4 validation and the gateway rules', () => {
  it('accepts a valid message and reads its destinations', () => {
    const b = msg([
      { fullUrl: u(1), resource: header({ focus: [{ reference: u(2) }] }) },
      {
        fullUrl: u(2),
        resource: {
          resourceType: 'Patient',
          contained: [{ resourceType: 'Organization', id: 'o', name: 'o' }],
          managingOrganization: { reference: '#o' },
        },
      },
    ]);
    expect(checkBundle(b)).toEqual({ type: 'message', entries: 2 });
    expect(messageDestinations(b)).toEqual([{ index: 0, endpoint: 'https://b.example/inbox', receiver: 'org-b' }]);
  });

  it('accepts a message without destination (R4: 0..*); it has no destinations to route to', () => {
    const b = msg([{ fullUrl: u(1), resource: header({ destination: undefined }) }]);
    expect(checkBundle(b)).toEqual({ type: 'message', entries: 1 });
    expect(messageDestinations(b)).toEqual([]);
  });

  it('accepts entries sharing a fullUrl when their meta.versionId differs (bdl-7)', () => {
    const v = (versionId: string) => ({
      fullUrl: 'https://x.example/Basic/1',
      resource: { ...basic, id: '1', meta: { versionId } },
    });
    expect(checkBundle(collection([v('1'), v('2')])).entries).toBe(2);
  });

  it('resolves the references of a nested Bundle against its own entries, not the outer ones', () => {
    const inner = documentOf([
      { fullUrl: u(11), resource: { ...composition, subject: { reference: u(12) } } },
      { fullUrl: u(12), resource: { resourceType: 'Patient' } },
    ]);
    const outer = msg([
      { fullUrl: u(1), resource: header({ focus: [{ reference: u(2) }] }) },
      { fullUrl: u(2), resource: inner },
    ]);
    expect(checkBundle(outer)).toEqual({ type: 'message', entries: 2 });
    // The inner Bundle's reference to an entry of the outer one does not resolve.
    (inner.entry[0] as { resource: { subject: { reference: string } } }).resource.subject.reference = u(1);
    expect(refusal(outer)).toContain('invariant Bundle.entry[1].resource.entry[0].resource.subject.reference');
  });

  it.each([
    ['a non-object', 'x', 'structure Bundle'],
    ['another resource', { resourceType: 'Patient' }, 'structure Bundle.resourceType'],
    ['no type', { resourceType: 'Bundle' }, 'required Bundle.type'],
    ['an unknown type', { resourceType: 'Bundle', type: 'letter' }, 'code-invalid Bundle.type'],
    ['a searchset', { resourceType: 'Bundle', type: 'searchset' }, 'not-supported Bundle.type'],
    ['entry not an array', collection({ fullUrl: u(1) }), 'structure Bundle.entry'],
    ['an entry without resource', collection([{ fullUrl: u(1) }]), 'invariant Bundle.entry[0]'],
    [
      'a resource without resourceType',
      collection([{ fullUrl: u(1), resource: { id: 'a' } }]),
      'structure Bundle.entry[0].resource.resourceType',
    ],
    [
      'an unknown resourceType',
      collection([{ fullUrl: u(1), resource: { resourceType: 'Foo' } }]),
      'structure Bundle.entry[0].resource.resourceType',
    ],
    [
      'a malformed urn:uuid',
      collection([{ fullUrl: 'urn:uuid:nope', resource: basic }]),
      'value Bundle.entry[0].fullUrl',
    ],
    [
      'a version-specific fullUrl (bdl-8)',
      collection([{ fullUrl: 'https://x.example/Basic/1/_history/2', resource: { ...basic, id: '1' } }]),
      'invariant Bundle.entry[0]',
    ],
    [
      'a duplicate fullUrl (bdl-7)',
      collection([
        { fullUrl: u(1), resource: basic },
        { fullUrl: u(1), resource: basic },
      ]),
      'invariant Bundle.entry[1].fullUrl',
    ],
    [
      'a fullUrl that disagrees with the resource id',
      collection([{ fullUrl: 'https://x.example/Basic/2', resource: { ...basic, id: '1' } }]),
      'invariant Bundle.entry[0].fullUrl',
    ],
    ['a message without fullUrl', msg([{ resource: header() }]), 'required Bundle.entry[0].fullUrl'],
    [
      'a message not starting with MessageHeader (bdl-12)',
      msg([{ fullUrl: u(1), resource: basic }]),
      'invariant Bundle',
    ],
    ['an empty message (bdl-12)', msg([]), 'invariant Bundle'],
    [
      'a MessageHeader without event',
      msg([{ fullUrl: u(1), resource: header({ eventCoding: undefined }) }]),
      'required Bundle.entry[0].resource.event',
    ],
    [
      'a MessageHeader without source.endpoint',
      msg([{ fullUrl: u(1), resource: header({ source: { name: 'a' } }) }]),
      'required Bundle.entry[0].resource.source.endpoint',
    ],
    [
      'a destination without endpoint',
      msg([{ fullUrl: u(1), resource: header({ destination: [{ name: 'b' }] }) }]),
      'required Bundle.entry[0].resource.destination[0].endpoint',
    ],
    [
      'a document without Composition (bdl-11)',
      documentOf([{ fullUrl: u(1), resource: { resourceType: 'Patient' } }]),
      'invariant Bundle',
    ],
    [
      'an unresolvable urn reference',
      collection([{ fullUrl: u(1), resource: observation({ subject: { reference: u(9) } }) }]),
      'invariant Bundle.entry[0].resource.subject.reference',
    ],
    [
      'a reference in an array',
      collection([{ fullUrl: u(1), resource: observation({ performer: [{ reference: u(1) }, { reference: u(8) }] }) }]),
      'invariant Bundle.entry[0].resource.performer[1].reference',
    ],
    [
      'a dangling contained reference',
      collection([{ fullUrl: u(1), resource: observation({ subject: { reference: '#p' } }) }]),
      'invariant Bundle.entry[0].resource.subject.reference',
    ],
  ])('refuses %s, naming the element', (_name, body, expected) => {
    expect(refusal(body)).toContain(expected);
  });

  it('accepts conditional and external references in transactions', () => {
    expect(
      checkBundle({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          {
            fullUrl: u(1),
            resource: {
              resourceType: 'Encounter',
              status: 'finished',
              class: { code: 'AMB' },
              participant: [{ individual: { reference: 'Practitioner?identifier=x|1' } }],
              serviceProvider: { reference: 'https://elsewhere.example/Organization/1' },
            },
            request: { method: 'POST', url: 'Encounter' },
          },
        ],
      }),
    ).toEqual({ type: 'transaction', entries: 1 });
  });

  it('gives the issues without throwing, for a caller that weighs them', () => {
    expect(validateBundleForIntake(collection([{ fullUrl: u(1), resource: basic }]))).toEqual([]);
    const issues = validateBundleForIntake(
      collection([{ fullUrl: u(1), resource: { resourceType: 'Patient', gender: 'x', birthDate: '2026-02-30' } }]),
    );
    expect(issues.map((i) => [i.type, i.expression])).toEqual([
      ['code-invalid', ['Bundle.entry[0].resource.gender']],
      ['value', ['Bundle.entry[0].resource.birthDate']],
    ]);
  });
});

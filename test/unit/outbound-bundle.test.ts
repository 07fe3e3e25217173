import { describe, expect, it } from 'vitest';
import { checkBundle, messageDestinations } from '../../src/fhir/bundle.ts';
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

function refusal(body: unknown): { code: string; expression?: string[]; message: string } {
  try {
    checkBundle(body);
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    const e = err as GatewayError;
    return { code: e.code, expression: e.expression, message: e.message };
  }
  throw new Error('accepted');
}

describe('checkBundle: structural FHIR R4 checks', () => {
  it('accepts a well-formed message and reads its destinations', () => {
    const b = msg([
      { fullUrl: u(1), resource: header({ focus: [{ reference: u(2) }] }) },
      {
        fullUrl: u(2),
        resource: {
          resourceType: 'Patient',
          contained: [{ resourceType: 'Organization', id: 'o' }],
          managingOrganization: { reference: '#o' },
        },
      },
    ]);
    expect(checkBundle(b)).toEqual({ type: 'message', entries: 2 });
    expect(messageDestinations(b)).toEqual([{ index: 0, endpoint: 'https://b.example/inbox', receiver: 'org-b' }]);
  });

  it.each([
    ['a non-object', 'x', 'Bundle'],
    ['another resource', { resourceType: 'Patient' }, 'Bundle.resourceType'],
    ['no type', { resourceType: 'Bundle' }, 'Bundle.type'],
    ['a searchset', { resourceType: 'Bundle', type: 'searchset' }, 'Bundle.type'],
    ['entry not an array', { resourceType: 'Bundle', type: 'collection', entry: {} }, 'Bundle.entry'],
    [
      'an entry without resource',
      { resourceType: 'Bundle', type: 'collection', entry: [{ fullUrl: u(1) }] },
      'Bundle.entry[0].resource',
    ],
    [
      'a resource without resourceType',
      { resourceType: 'Bundle', type: 'collection', entry: [{ fullUrl: u(1), resource: {} }] },
      'Bundle.entry[0].resource.resourceType',
    ],
    [
      'a malformed urn:uuid',
      {
        resourceType: 'Bundle',
        type: 'collection',
        entry: [{ fullUrl: 'urn:uuid:nope', resource: { resourceType: 'Basic' } }],
      },
      'Bundle.entry[0].fullUrl',
    ],
    [
      'a version-specific fullUrl',
      {
        resourceType: 'Bundle',
        type: 'collection',
        entry: [{ fullUrl: 'https://x.example/Patient/1/_history/2', resource: { resourceType: 'Patient' } }],
      },
      'Bundle.entry[0].fullUrl',
    ],
    [
      'a duplicate fullUrl',
      {
        resourceType: 'Bundle',
        type: 'collection',
        entry: [
          { fullUrl: u(1), resource: { resourceType: 'Basic' } },
          { fullUrl: u(1), resource: { resourceType: 'Basic' } },
        ],
      },
      'Bundle.entry[1].fullUrl',
    ],
    ['a message without fullUrl', msg([{ resource: header() }]), 'Bundle.entry[0].fullUrl'],
    [
      'a message not starting with MessageHeader',
      msg([{ fullUrl: u(1), resource: { resourceType: 'Patient' } }]),
      'Bundle.entry[0].resource',
    ],
    ['an empty message', msg([]), 'Bundle.entry[0].resource'],
    [
      'a MessageHeader without event',
      msg([{ fullUrl: u(1), resource: header({ eventCoding: undefined }) }]),
      'Bundle.entry[0].resource.event',
    ],
    [
      'a MessageHeader without source.endpoint',
      msg([{ fullUrl: u(1), resource: header({ source: {} }) }]),
      'Bundle.entry[0].resource.source.endpoint',
    ],
    [
      'a destination without endpoint',
      msg([{ fullUrl: u(1), resource: header({ destination: [{ name: 'b' }] }) }]),
      'Bundle.entry[0].resource.destination[0].endpoint',
    ],
    [
      'a document without Composition',
      { resourceType: 'Bundle', type: 'document', entry: [{ fullUrl: u(1), resource: { resourceType: 'Patient' } }] },
      'Bundle.entry[0].resource',
    ],
    [
      'an unresolvable urn reference',
      {
        resourceType: 'Bundle',
        type: 'collection',
        entry: [{ fullUrl: u(1), resource: { resourceType: 'Observation', subject: { reference: u(9) } } }],
      },
      'Bundle.entry[0].resource.subject.reference',
    ],
    [
      'a reference in an array',
      {
        resourceType: 'Bundle',
        type: 'collection',
        entry: [
          {
            fullUrl: u(1),
            resource: { resourceType: 'Observation', performer: [{ reference: u(1) }, { reference: u(8) }] },
          },
        ],
      },
      'Bundle.entry[0].resource.performer[1].reference',
    ],
    [
      'a dangling contained reference',
      {
        resourceType: 'Bundle',
        type: 'collection',
        entry: [{ fullUrl: u(1), resource: { resourceType: 'Observation', subject: { reference: '#p' } } }],
      },
      'Bundle.entry[0].resource.subject.reference',
    ],
  ])('refuses %s, naming %s', (_name, body, expression) => {
    const r = refusal(body);
    expect(r.code).toBe('INVALID_FHIR');
    expect(r.expression).toEqual([expression]);
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
              participant: [{ individual: { reference: 'Practitioner?identifier=x|1' } }],
              serviceProvider: { reference: 'https://elsewhere.example/Organization/1' },
            },
            request: { method: 'POST', url: 'Encounter' },
          },
        ],
      }),
    ).toEqual({ type: 'transaction', entries: 1 });
  });
});

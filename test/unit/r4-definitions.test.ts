import { describe, expect, it } from 'vitest';
import { ensureR4Definitions, valueSetCodes } from '../../src/fhir/r4-definitions.ts';

describe('R4 definitions: the terminology kept only as the expansions of required bindings', () => {
  it('answers an expanded binding, and refuses one never expanded rather than leaving it unchecked', () => {
    ensureR4Definitions();
    // Bundle.type's required binding: expanded while loading.
    expect(valueSetCodes('http://hl7.org/fhir/ValueSet/bundle-type|4.0.1')?.has('transaction')).toBe(true);
    // No element binds it as required: released with the terminology, it must not pass as "not checkable".
    expect(() => valueSetCodes('http://hl7.org/fhir/ValueSet/languages')).toThrow(/was not expanded/);
  });
});

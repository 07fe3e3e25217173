import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { checkAcceptable, checkContentVersion } from '../../src/fhir/rest/format.ts';
import { parsePrefer } from '../../src/fhir/rest/prefer.ts';
import { etagOf, notModified } from '../../src/fhir/rest/etag.ts';

const codeOf = (f: () => void): string | undefined => {
  try {
    f();
    return undefined;
  } catch (err) {
    return err instanceof GatewayError ? err.code : 'not a GatewayError';
  }
};

describe('Prefer', () => {
  it.each([
    [undefined, {}],
    ['return=minimal', { return: 'minimal' }],
    ['return="representation"', { return: 'representation' }],
    ['RETURN=OperationOutcome', { return: 'OperationOutcome' }],
    ['handling=lenient, return=minimal', { return: 'minimal', handling: 'lenient' }],
    [['handling=strict', 'handling=lenient'], { handling: 'strict' }],
    ['respond-async, wait=10', {}],
    ['return=everything; handling=lenient', {}],
    ['handling=lenient; x=1', { handling: 'lenient' }],
    ['return=minimal,return=representation', { return: 'minimal' }],
    ['return', {}],
  ])('%j → %j', (header, expected) => {
    expect(parsePrefer(header as string | string[] | undefined)).toEqual(expected);
  });
});

describe('FHIR formats served', () => {
  it.each([
    [undefined, undefined, undefined],
    ['application/fhir+json', undefined, undefined],
    ['application/json', undefined, undefined],
    ['*/*', undefined, undefined],
    ['application/*;q=0.5', undefined, undefined],
    ['application/fhir+xml, application/fhir+json;q=0.1', undefined, undefined],
    ['application/fhir+json; fhirVersion="4.0"', undefined, undefined],
    ['application/fhir+json; fhirVersion=4.0.1', undefined, undefined],
    ['application/fhir+xml', undefined, 'NOT_ACCEPTABLE'],
    ['text/turtle', undefined, 'NOT_ACCEPTABLE'],
    ['application/fhir+json;q=0', undefined, 'NOT_ACCEPTABLE'],
    ['application/fhir+json; fhirVersion=3.0', undefined, 'NOT_ACCEPTABLE'],
    ['application/fhir+xml', 'json', undefined],
    [undefined, 'application/fhir+json', undefined],
    [undefined, 'xml', 'NOT_ACCEPTABLE'],
    [undefined, 'ttl', 'NOT_ACCEPTABLE'],
    [undefined, 'html', 'NOT_ACCEPTABLE'],
    [undefined, 'application/fhir+json; fhirVersion=5.0', 'NOT_ACCEPTABLE'],
  ])('Accept %j, _format %j → %s', (accept, format, code) => {
    expect(codeOf(() => checkAcceptable(accept, format))).toBe(code);
  });

  it.each([
    [undefined, undefined],
    ['application/fhir+json', undefined],
    ['application/fhir+json; charset=utf-8; fhirVersion=4.0', undefined],
    ['application/fhir+json; fhirVersion=3.0', 'UNSUPPORTED_MEDIA_TYPE'],
    ['application/fhir+json; fhirversion=6.0', 'UNSUPPORTED_MEDIA_TYPE'],
  ])('Content-Type %j → %s', (type, code) => {
    expect(codeOf(() => checkContentVersion(type))).toBe(code);
  });
});

describe('entity tags', () => {
  it('a weak tag of the bytes; If-None-Match compares weakly, any of a list, or *', () => {
    const tag = etagOf('{"a":1}');
    expect(tag).toMatch(/^W\/"[\w-]{27}"$/);
    expect(etagOf('{"a":1}')).toBe(tag);
    expect(etagOf('{"a":2}')).not.toBe(tag);
    expect(notModified(undefined, tag)).toBe(false);
    expect(notModified(tag, tag)).toBe(true);
    expect(notModified(tag.slice(2), tag)).toBe(true);
    expect(notModified(`"x", ${tag}`, tag)).toBe(true);
    expect(notModified('*', tag)).toBe(true);
    expect(notModified('"x"', tag)).toBe(false);
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkBundle } from '../../src/fhir/bundle.ts';
import { decodeJsonBody, jsonDepth, parseFhirJson } from '../../src/fhir/json.ts';
import { messageBundle } from '../helpers/outbound.ts';
import { deepNesting, hostileJsonValue, mutatedJson, mutatedText, rawBytes } from './arbitraries.ts';
import { fuzz, returnsOr4xx } from './harness.ts';

const MAX_DEPTH = 64;

/** The depth guard's reference: one character at a time, a backslash in a string skipping the next. */
function depthByCharacter(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') max = Math.max(max, ++depth);
    else if (c === '}' || c === ']') depth--;
  }
  return max;
}

/** The whole intake read: bytes → UTF-8 text → guarded JSON → FHIR structure. */
const intake = (bytes: Buffer) => checkBundle(parseFhirJson(decodeJsonBody(bytes), MAX_DEPTH));

const message = JSON.parse(messageBundle(['https://partner.example'], 0)) as Record<string, unknown>;
const documentBundle = {
  resourceType: 'Bundle',
  type: 'document',
  identifier: { system: 'urn:ietf:rfc:3986', value: 'urn:uuid:0d2b7c1e-3f4a-4b5c-8d6e-7f8091a2b3c4' },
  timestamp: '2026-01-01T00:00:00Z',
  entry: [
    {
      fullUrl: 'urn:uuid:11111111-2222-4333-8444-555555555555',
      resource: {
        resourceType: 'Composition',
        status: 'final',
        type: { text: 'note' },
        date: '2026-01-01',
        author: [{ display: 'a' }],
        title: 'note',
        subject: { reference: 'urn:uuid:66666666-7777-4888-9999-000000000000' },
      },
    },
    {
      fullUrl: 'urn:uuid:66666666-7777-4888-9999-000000000000',
      resource: {
        resourceType: 'Patient',
        contained: [{ resourceType: 'Organization', id: 'o1', name: 'o' }],
        managingOrganization: { reference: '#o1' },
      },
    },
  ],
};
const valid = [message, documentBundle, { resourceType: 'Bundle', type: 'collection', entry: [] }];

describe('fuzz: FHIR JSON intake (decodeJsonBody, parseFhirJson, checkBundle)', () => {
  it('the valid seeds pass, so mutations start from an accepted Bundle', () => {
    for (const b of valid) expect(intake(Buffer.from(JSON.stringify(b))).type).toBe(b.type);
  });

  it('raw bytes: a Bundle summary or a 4xx GatewayError', () => {
    fuzz(rawBytes, (bytes) => void returnsOr4xx(() => intake(bytes)), { numRuns: 1500 });
  });

  it('JSON of arbitrary shape: a Bundle summary or a 4xx GatewayError', () => {
    fuzz(
      fc.oneof(fc.jsonValue({ maxDepth: 8 }), hostileJsonValue, fc.object({ maxDepth: 4 })),
      (value) => void returnsOr4xx(() => intake(Buffer.from(JSON.stringify(value) ?? 'null'))),
      { numRuns: 1500 },
    );
  });

  it('Bundles with mutated fields: a Bundle summary or a 4xx GatewayError', () => {
    fuzz(
      fc.constantFrom(...valid).chain((b) => mutatedJson(b)),
      (bundle) => void returnsOr4xx(() => intake(Buffer.from(JSON.stringify(bundle)))),
      { numRuns: 3000 },
    );
  });

  it('mutated Bundle text (cut, spliced, control characters): a Bundle summary or a 4xx GatewayError', () => {
    fuzz(
      fc.constantFrom(...valid.map((b) => JSON.stringify(b))).chain((t) => mutatedText(t)),
      (text) => void returnsOr4xx(() => intake(Buffer.from(text))),
      { numRuns: 1500 },
    );
  });

  it('deep and unbalanced nesting: refused by the depth guard or the parser, never a stack overflow', () => {
    fuzz(
      deepNesting,
      (text) => {
        const got = returnsOr4xx(() => intake(Buffer.from(text)));
        if (text.length > 4 * MAX_DEPTH) expect(got).toBeInstanceOf(Error);
      },
      { numRuns: 300 },
    );
  });

  it('the depth guard, jumping from bracket to bracket and over strings, counts as a character-by-character reading', () => {
    const text = fc
      .array(fc.constantFrom('{', '}', '[', ']', '"', '\\', 'a', ':', ','), { maxLength: 80 })
      .map((cs) => cs.join(''));
    fuzz(text, (t) => void expect(jsonDepth(t)).toBe(depthByCharacter(t)), { numRuns: 20_000 });
    expect(jsonDepth(`{"a":"${'\\"'.repeat(3)}[[[","b":[[1]]}`)).toBe(3);
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseAuditQuery } from '../../src/audit/search.ts';
import { auditValue } from './http-arbitraries.ts';
import { hostileString } from './arbitraries.ts';
import { fuzz, returnsOr4xx } from './harness.ts';

const NAMES = ['date', 'type', 'subtype', 'outcome', 'entity', 'agent', '_count', '_offset', '_format'] as const;

/** A parsed query string as Fastify hands it over: each name once (a string) or repeated (an array). */
const query = fc.dictionary(
  fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...NAMES) }, { weight: 1, arbitrary: hostileString }),
  fc.oneof(
    fc.constantFrom(...NAMES).chain((n) => auditValue(n)),
    fc.array(
      fc.constantFrom(...NAMES).chain((n) => auditValue(n)),
      { minLength: 2, maxLength: 3 },
    ),
  ),
  { maxKeys: 4 },
);

describe('fuzz: AuditEvent search parameters (src/audit/search.ts)', () => {
  it('a valid seed parses', () => {
    expect(parseAuditQuery({ date: 'ge2026-01-01', type: '110100', _count: '10' }).count).toBe(10);
  });

  it('any query: a search with bound parameters or a 4xx GatewayError', () => {
    fuzz(query, (q) => void returnsOr4xx(() => parseAuditQuery(q)), { numRuns: 3000 });
  });
});

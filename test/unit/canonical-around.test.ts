import { describe, expect, it } from 'vitest';
import { canonicalJson, canonicalJsonAround } from '../../src/audit/canonical.ts';

// The database fills in the audit index between the two halves; the result must be
// exactly the canonical JSON the verifier recomputes.
describe('canonicalJsonAround', () => {
  const cases: Array<Record<string, unknown>> = [
    {},
    { type: 'x' },
    { agent: { id: 'ü-client', type: 'client' } },
    {
      type: 'intake.accepted',
      outcome: 'success',
      agent: { type: 'client', id: 'a' },
      entity: [{ type: 'exchange', id: '1', digest: 'sha-256=x' }],
      detail: { index: 7, n: null },
      recorded: '2026-01-01T00:00:00.000Z',
    },
    { zzz: 1, aaa: 2, undefinedValue: undefined, index: 99 }, // an index already there is replaced
  ];
  it.each(cases)('before + value + after is canonicalJson with the key set (%#)', (value) => {
    for (const v of [0, 1, 12345678901234]) {
      const [before, after] = canonicalJsonAround(value, 'index');
      expect(before + canonicalJson(v) + after).toBe(canonicalJson({ ...value, index: v }));
    }
  });
});

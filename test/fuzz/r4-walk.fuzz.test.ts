import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Issue } from '../../src/errors.ts';
import { r4Issues } from '../../src/fhir/r4-validate.ts';
import { referenceR4Issues } from '../helpers/r4-reference.ts';
import { mutatedJson } from './arbitraries.ts';
import { fuzz } from './harness.ts';

/**
 * The one typed walk against the reference it replaced (validateResource and
 * a second walk for what it lacks, test/helpers/r4-reference.ts): the same
 * issues on the HL7 examples, and on mutated examples never weaker — whatever
 * the reference refuses is refused, at the same element or one enclosing it.
 */
type Json = Record<string, unknown>;
const DIR = join(import.meta.dirname, '../../node_modules/hl7.fhir.r4.examples');
const small = readdirSync(DIR)
  .filter((f) => f.endsWith('.json') && f !== 'package.json')
  .sort()
  .map((f) => readFileSync(join(DIR, f), 'utf8'))
  .filter((text) => text.length < 20_000)
  .map((text) => JSON.parse(text) as Json);
const sample = small.filter((_, i) => i % 8 === 0);

const lines = (issues: Issue[]) => issues.map((i) => `${i.type} ${i.expression?.[0]}`);
// The reference names an array's item inside a nested array or string as `.0`; the walk as `[0]`.
const normal = (at: string) => at.replace(/\.(\d+)(?=\.|\[|$)/g, '[$1]');
const within = (outer: string, at: string) => at === outer || at.startsWith(`${outer}.`) || at.startsWith(`${outer}[`);

describe('fuzz: the one-walk R4 validator against the two-walk reference', () => {
  it('finds exactly the reference issues in every eighth small HL7 example', () => {
    expect(sample.length).toBeGreaterThan(450);
    let invalid = 0;
    for (const resource of sample) {
      const reference = lines(referenceR4Issues(structuredClone(resource)));
      if (reference.length) invalid++;
      expect(lines(r4Issues(resource)), String(resource.id)).toEqual(reference);
    }
    expect(invalid).toBeGreaterThan(0); // the corpus holds invalid examples too
  });

  it('mutated examples: refused whenever the reference refuses, at its elements or enclosing ones', () => {
    const seeds = small
      .filter((_, i) => i % 97 === 0)
      .filter((r) => referenceR4Issues(structuredClone(r)).length === 0);
    expect(seeds.length).toBeGreaterThan(40);
    let refused = 0;
    fuzz(
      fc.constantFrom(...seeds).chain((s) => mutatedJson(s)),
      (doc) => {
        const reference = referenceR4Issues(structuredClone(doc));
        const walk = r4Issues(structuredClone(doc));
        if (!reference.length) return;
        refused++;
        expect(walk.length, JSON.stringify(lines(reference))).toBeGreaterThan(0);
        // A capped outcome, a root without resourceType or one the reference could not read name other elements.
        if (reference.length >= 50 || typeof doc.resourceType !== 'string') return;
        if (reference.some((i) => i.diagnostics.includes('validator can read'))) return;
        const named = walk.map((i) => normal(i.expression?.[0] ?? ''));
        for (const i of reference) {
          const at = normal(i.expression?.[0] ?? '');
          expect(
            named.some((n) => within(n, at)),
            `${at} (${i.diagnostics}) among ${named.join(', ')}`,
          ).toBe(true);
        }
      },
      { numRuns: 800 },
    );
    expect(refused).toBeGreaterThan(0); // the mutations do reach refusals
  });
});

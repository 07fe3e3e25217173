/**
 * R4 validation alone, as intake does it, over the Synthea bundles (test/fixtures/synthea, 18 patients
 * and 2 directories, 19 MB): per bundle the body's parse (UTF-8, depth guard, JSON) and its validation
 * (checkBundle), after the R4 definitions are loaded. Every bundle must be valid.
 * Run: npm run bench:validate [-- rounds]   (default 3; the last round is reported)
 * It prints the definitions' load, then per bundle its size, parse and validation in ms, and the
 * totals with validation as a multiple of the parse (JSON.parse is the primitive it is read against).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkBundle } from '../src/fhir/bundle.ts';
import { decodeJsonBody, parseFhirJson } from '../src/fhir/json.ts';
import { ensureR4Definitions } from '../src/fhir/r4-definitions.ts';

const ROUNDS = Number(process.argv[2] ?? 3);
const DIR = join(import.meta.dirname, '..', 'test', 'fixtures', 'synthea');
const files = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .sort();
const bodies = files.map((f) => readFileSync(join(DIR, f)));

let t = performance.now();
ensureR4Definitions();
console.log(`definitions loaded in ${(performance.now() - t).toFixed(0)} ms`);

const rows: Array<{ file: string; mb: number; parse: number; validate: number; json: number }> = [];
for (let round = 0; round < ROUNDS; round++) {
  rows.length = 0;
  for (const [i, bytes] of bodies.entries()) {
    t = performance.now();
    const bundle = parseFhirJson(decodeJsonBody(bytes), 64);
    const parsed = performance.now();
    checkBundle(bundle);
    const validated = performance.now();
    JSON.parse(bytes.toString('utf8'));
    rows.push({
      file: files[i] as string,
      mb: bytes.length / 1e6,
      parse: parsed - t,
      validate: validated - parsed,
      json: performance.now() - validated,
    });
  }
}
for (const r of rows)
  console.log(
    `${r.file.slice(0, 28).padEnd(28)} ${r.mb.toFixed(2).padStart(5)} MB  parse ${r.parse.toFixed(1).padStart(6)} ms  validate ${r.validate.toFixed(1).padStart(7)} ms`,
  );
const sum = (k: 'mb' | 'parse' | 'validate' | 'json') => rows.reduce((n, r) => n + r[k], 0);
console.log(
  `total ${sum('mb').toFixed(1)} MB: parse ${sum('parse').toFixed(0)} ms, validate ${sum('validate').toFixed(0)} ms ` +
    `(${(sum('validate') / sum('mb')).toFixed(0)} ms per MB), JSON.parse ${sum('json').toFixed(0)} ms; ` +
    `validate / JSON.parse ${(sum('validate') / sum('json')).toFixed(1)}, parse / JSON.parse ${(sum('parse') / sum('json')).toFixed(2)}`,
);

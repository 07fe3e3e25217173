// Rewrites the configuration table in README.md from the schema in src/config.ts,
// and its metrics table from the catalogue in src/metrics/catalogue.ts.
// Run: node_modules/.bin/node scripts/readme-config.ts
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configTable } from '../src/config.ts';
import { metricsTable } from '../src/metrics/catalogue.ts';

const file = join(import.meta.dirname, '..', 'README.md');
const readme = readFileSync(file, 'utf8');
const next = readme
  .replace(/(<!-- config:start -->\n)[\s\S]*?(<!-- config:end -->)/, `$1${configTable()}\n$2`)
  .replace(/(<!-- metrics:start -->\n)[\s\S]*?(<!-- metrics:end -->)/, `$1${metricsTable()}\n$2`);
writeFileSync(file, next);

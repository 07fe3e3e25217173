// Rewrites the configuration table in README.md from the schema in src/config.ts.
// Run: node_modules/.bin/node scripts/readme-config.ts
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configTable } from '../src/config.ts';

const file = join(import.meta.dirname, '..', 'README.md');
const readme = readFileSync(file, 'utf8');
const next = readme.replace(/(<!-- config:start -->\n)[\s\S]*?(<!-- config:end -->)/, `$1${configTable()}\n$2`);
writeFileSync(file, next);

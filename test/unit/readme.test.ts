import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configTable } from '../../src/config.ts';

const README = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');

describe('README', () => {
  it('documents every configuration variable exactly as the schema defines it', () => {
    const block = /<!-- config:start -->\n([\s\S]*?)\n<!-- config:end -->/.exec(README)?.[1];
    // Regenerate with: node_modules/.bin/node scripts/readme-config.ts
    expect(block).toBe(configTable());
  });

  it('has the two quick-start commands', () => {
    expect(README).toContain('npm run setup && npm start');
    expect(README).toContain('npm run setup:test && npm test');
  });

  it('has the demo as the third quick-start line, with its output', () => {
    expect(README).toContain('npx gateway demo                           # 3.');
    expect(README).toContain('done: 4 of 4 items arrived at B byte for byte, each with a signed receipt');
  });
});

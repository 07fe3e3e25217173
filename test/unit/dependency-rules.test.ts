import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');
const depcruise = join(root, 'node_modules/.bin/depcruise');
const run = promisify(execFile);

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
}

/** Cruise with the project's own config; depcruise exits non-zero on a violation, its JSON report is on stdout. */
async function violations(paths: string[]): Promise<Violation[]> {
  const args = ['--config', '.dependency-cruiser.cjs', '--output-type', 'json', ...paths];
  const stdout = await run(depcruise, args, { cwd: root, maxBuffer: 64 << 20 }).then(
    (r) => r.stdout,
    (err: { stdout?: string }) => {
      if (!err.stdout) throw err;
      return err.stdout;
    },
  );
  return (JSON.parse(stdout) as { summary: { violations: Violation[] } }).summary.violations;
}

/** Put a violating module into the tree for one cruise, and always take it out again. */
async function withModule(path: string, source: string, cruise: string[]): Promise<Violation[]> {
  const file = join(root, path);
  writeFileSync(file, source, { flag: 'wx' });
  try {
    return await violations(cruise);
  } finally {
    rmSync(file, { force: true });
  }
}

const tmp = (folder: string) => `${folder}/zz-dependency-rule-probe-${process.pid}.ts`;

const cases: Array<{ rule: string; folder: string; source: string }> = [
  { rule: 'outbound-not-inbound', folder: 'src/outbound', source: "import '../inbound/receive.ts';\n" },
  { rule: 'inbound-not-outbound', folder: 'src/inbound', source: "import '../outbound/intake.ts';\n" },
  { rule: 'protocol-not-pipelines', folder: 'src/protocol', source: "import '../inbound/inbox-store.ts';\n" },
  { rule: 'jose-self-contained', folder: 'src/jose', source: "import '../ids.ts';\n" },
  { rule: 'keys-not-above', folder: 'src/keys', source: "import '../directory/directory.ts';\n" },
  { rule: 'verifier-no-node-builtins', folder: 'src/audit/verifier', source: "import 'node:crypto';\n" },
  { rule: 'verifier-browser-safe', folder: 'src/audit/verifier', source: "import '../canonical.ts';\n" },
  { rule: 'src-framework-free', folder: 'src/net', source: "import 'fastify';\n" },
];

describe('dependency rules (.dependency-cruiser.cjs) report a violating module by name', () => {
  for (const c of cases) {
    it(`${c.rule}: ${c.folder} ${c.source.trim()}`, { timeout: 60_000 }, async () => {
      const path = tmp(c.folder);
      const found = await withModule(path, c.source, [path]);
      expect(found.filter((v) => v.from === path).map((v) => v.rule.name)).toContain(c.rule);
    });
  }

  it(
    'no-folder-cycles: net importing outbound closes a cycle, as outbound imports net',
    { timeout: 60_000 },
    async () => {
      const path = tmp('src/net');
      const found = await withModule(path, "import '../outbound/exchange-view.ts';\n", ['src']);
      const cycles = found.filter((v) => v.rule.name === 'no-folder-cycles');
      expect(cycles.map((v) => [v.from, v.to].sort().join(' '))).toContain('src/net src/outbound');
      expect(
        found.every((v) => v.rule.name === 'no-folder-cycles'),
        JSON.stringify(found),
      ).toBe(true);
    },
  );

  it('the tree itself (without probes) has no violation', { timeout: 60_000 }, async () => {
    expect(await violations(['src'])).toEqual([]);
  });
});

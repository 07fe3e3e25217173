import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HEAP_START_FLAGS, missingStartFlags } from '../../src/runtime/v8-heap.ts';
import { NODE } from '../helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'v8-heap-'));
const script = join(dir, 'relaunched.ts');
// Fills the young generation, then reports what this process became: V8 grows the new space up to the limit.
writeFileSync(
  script,
  `import { getHeapSpaceStatistics } from 'node:v8';
import { relaunchWithStartFlags } from ${JSON.stringify(resolve('src/runtime/v8-heap.ts'))};
relaunchWithStartFlags();
let keep = [];
for (let i = 0; i < 400_000; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 200_000) keep = []; }
const newSpace = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
process.stdout.write(JSON.stringify({ pid: process.pid, execArgv: process.execArgv, argv: process.argv.slice(2), newSpace: newSpace.space_size }));
`,
);

function run(args: string[], env: NodeJS.ProcessEnv = process.env) {
  return new Promise<{ pid: number; out: { pid: number; execArgv: string[]; argv: string[]; newSpace: number } }>(
    (done, fail) => {
      const child = spawn(NODE, [...args, script, 'serve', '--flag'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      child.stdout.on('data', (d) => (text += d));
      child.on('error', fail);
      child.on('exit', () => done({ pid: child.pid as number, out: JSON.parse(text) }));
    },
  );
}

describe('the heap settings V8 reads only at its start', () => {
  it('are missing unless given on the command line or in NODE_OPTIONS, in either spelling, at any value', () => {
    expect(missingStartFlags([])).toEqual([...HEAP_START_FLAGS]);
    expect(missingStartFlags(['--max-semi-space-size=32'])).toEqual([]);
    expect(missingStartFlags(['--max_semi_space_size=2'])).toEqual([]);
    expect(missingStartFlags(['--inspect'], '--max-semi-space-size=16 --trace-gc')).toEqual([]);
    expect(missingStartFlags(['--max-old-space-size=512'])).toEqual([...HEAP_START_FLAGS]);
  });

  it('relaunch the same process (same pid, same arguments) with them, and V8 keeps its young generation within them', async () => {
    const { pid, out } = await run([]);
    expect(out.pid).toBe(pid);
    expect(out.execArgv).toEqual([...HEAP_START_FLAGS]);
    expect(out.argv).toEqual(['serve', '--flag']);
    const semiSpaceMiB = Number(HEAP_START_FLAGS[0]?.split('=')[1]);
    expect(out.newSpace).toBeLessThanOrEqual(2 * semiSpaceMiB * 1024 * 1024 + 1024 * 1024);
  });

  it('leave an operator’s own setting alone', async () => {
    const { out } = await run(['--max-semi-space-size=32']);
    expect(out.execArgv).toEqual(['--max-semi-space-size=32']);
    const viaOptions = await run([], { ...process.env, NODE_OPTIONS: '--max-semi-space-size=32' });
    expect(viaOptions.out.execArgv).toEqual([]);
    // V8's own sizing on this machine is larger than the gateway's: the setting is what keeps it small.
    expect(out.newSpace).toBeGreaterThan(2 * 8 * 1024 * 1024 + 1024 * 1024);
  });
});

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GATEWAY_NODE_FLAGS, missingNodeFlags } from '../../src/runtime/node-flags.ts';
import { NODE, ROOT } from '../helpers/cli.ts';

// The gateway's Node flags must be on the command line (src/runtime/node-flags.ts), so they are written
// out wherever a gateway process is launched. This keeps every launcher in step with the one list.
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

describe('gateway Node flags', () => {
  it('are passed by every launcher: the npm scripts and the container entrypoint', () => {
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    const entrypoint = /^ENTRYPOINT (.*)$/m.exec(read('Dockerfile'))?.[1];
    expect(entrypoint).toBeDefined();
    const launchers = { 'npm start': scripts.start!, 'npm run gateway': scripts.gateway!, entrypoint: (JSON.parse(entrypoint!) as string[]).join(' ') };
    for (const [name, command] of Object.entries(launchers)) {
      for (const flag of GATEWAY_NODE_FLAGS) expect(command.split(' '), name).toContain(flag);
    }
  });

  it('are accepted by the pinned runtime', () => {
    const r = spawnSync(NODE, [...GATEWAY_NODE_FLAGS, '-e', 'process.stdout.write(JSON.stringify(process.execArgv))'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(missingNodeFlags(JSON.parse(r.stdout) as string[])).toEqual([]);
    expect(missingNodeFlags([])).toEqual([...GATEWAY_NODE_FLAGS]);
  });
});

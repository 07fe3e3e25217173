import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { GATEWAY, NODE, ROOT, cleanEnv, exited, runCli, waitFor } from '../helpers/cli.ts';

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** What the demo sends: every bundle and DICOM file of demo/, by name and hash. */
function demoFiles(): Map<string, string> {
  const files = new Map<string, string>();
  for (const [sub, ext] of [
    ['records', '.json'],
    ['imaging', '.dcm'],
  ] as const) {
    for (const name of readdirSync(join(ROOT, 'demo', sub)).filter((n) => n.endsWith(ext)))
      files.set(name, sha256(join(ROOT, 'demo', sub, name)));
  }
  return files;
}

/** B's EHR wrote what it pulled into b/ehr-received: the same bytes as A sent, file for file. */
function expectPulledByteForByte(dir: string): void {
  const sent = demoFiles();
  expect([...sent.keys()].filter((n) => n.endsWith('.json'))).toHaveLength(3);
  expect([...sent.keys()].filter((n) => n.endsWith('.dcm'))).toHaveLength(1);
  const received = join(dir, 'b', 'ehr-received');
  expect(readdirSync(received).sort()).toEqual([...sent.keys()].sort());
  for (const [name, hash] of sent) expect(sha256(join(received, name)), name).toBe(hash);
}

/**
 * `gateway demo` in a process group of its own, as a shell runs it in the foreground: Ctrl-C there
 * signals the whole group, which `ctrlC` does.
 */
function startDemo(args: string[]): ChildProcess & { output: () => string; ctrlC: () => void } {
  const child = spawn(NODE, [GATEWAY, 'demo', ...args], {
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  return Object.assign(child, {
    output: () => out,
    ctrlC: () => process.kill(-(child.pid ?? 0), 'SIGINT'),
  });
}

const stoppedCleanly = (dir: string) => {
  for (const side of ['a', 'b']) expect(existsSync(join(dir, side, 'pg', 'postmaster.pid')), side).toBe(false);
};

describe('gateway demo: two hospitals on one machine', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-demo-'));
  chmodSync(dir, 0o755); // the postgres OS user must reach the data directories below it when we run as root
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('exchanges records and a CT image from A to B, shows receipts and checkpoints, then stops both', async () => {
    const run = await runCli(['demo', '--dir', dir], cleanEnv(), 150_000);
    const out = run.stdout;
    expect(run.code, run.stderr + out).toBe(0);
    expectPulledByteForByte(dir);
    // Every item's signed receipt, and a checkpoint of each audit log, are named in the output.
    expect(out.match(/: delivered; receipt [0-9a-f-]{36} \(exchange-receipt\+jwt, ES256/g)).toHaveLength(4);
    expect(out).toMatch(/gateway A: checkpoint of \d+ audit entries/);
    expect(out).toMatch(/gateway B: checkpoint of \d+ audit entries/);
    expect(out).toContain('done: 4 of 4 items arrived at B byte for byte');
    // The steps are shown as the commands that do them, and it says where to look.
    expect(out).toContain('npx gateway clients add --id demo-admin');
    expect(out).toContain('"$A/exchanges?recipient=demo-hospital-b"');
    expect(out).toContain('"$B/inbox/messages?state=received"');
    expect(out).toMatch(/audit page +http:\/\/127\.0\.0\.1:\d+\/audit\/ui/);
    expect(out).toContain('docs/PROTOCOL.md');
    // Each gateway logged that it was ready, with its URLs, in one line (its stdout is no terminal).
    for (const side of ['a', 'b']) {
      const ready = readFileSync(join(dir, side, 'gateway.log'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('"msg":"gateway ready"'));
      expect(ready).toHaveLength(1);
      expect(JSON.parse(ready[0] ?? '{}')).toMatchObject({ docs: expect.stringMatching(/\/docs$/) });
    }
    // Both shut down gracefully, embedded PostgreSQL included.
    expect(out.trimEnd().endsWith('stopped')).toBe(true);
    stoppedCleanly(dir);
  }, 150_000);

  it('with --keep, runs again on the same folder and keeps both gateways up until Ctrl-C', async () => {
    rmSync(join(dir, 'b', 'ehr-received'), { recursive: true });
    const demo = startDemo(['--keep', '--dir', dir]);
    try {
      // Done with its steps, or exited early (then the output says why).
      await waitFor(
        async () => demo.exitCode !== null || demo.output().includes('press Ctrl-C'),
        60_000,
        'the demo finished its steps',
      );
      if (demo.exitCode !== null) throw new Error(`the demo exited (${demo.exitCode}) before its end`);
    } catch (err) {
      demo.ctrlC();
      await exited(demo, 60_000).catch(() => demo.kill('SIGKILL'));
      throw new Error(`${(err as Error).message}\n${demo.output()}`);
    }
    const out = demo.output();
    // Keys, databases and registrations are reused; the content goes through again.
    expect(out).toContain('(registered by an earlier run)');
    expect(out).toContain('done: 4 of 4 items arrived at B byte for byte');
    expectPulledByteForByte(dir);
    const url = /\$ A=(http:\/\/127\.0\.0\.1:\d+) B=(http:\/\/127\.0\.0\.1:\d+)/.exec(out);
    for (const base of [url?.[1], url?.[2]]) expect((await fetch(`${base}/ready`)).status).toBe(200);

    demo.ctrlC();
    expect(await exited(demo, 60_000)).toBe(0);
    // Both shut down gracefully (one signal each: exit 0, not the second signal's exit 1), PostgreSQL included.
    expect(demo.output().trimEnd().endsWith('stopped')).toBe(true);
    stoppedCleanly(dir);
    for (const base of [url?.[1], url?.[2]]) await expect(fetch(`${base}/ready`)).rejects.toThrow();
  }, 90_000);

  it('on Ctrl-C while the gateways are still starting, stops each gracefully once it can', async () => {
    const early = startDemo(['--dir', dir]);
    await waitFor(async () => early.output().includes('npx gateway start\n   $'), 30_000, 'both gateways spawned');
    early.ctrlC();
    expect(await exited(early, 60_000), early.output()).toBe(0);
    expect(early.output().trimEnd().endsWith('stopped')).toBe(true);
    expect(early.output()).not.toContain('done:');
    stoppedCleanly(dir);
  }, 90_000);
});

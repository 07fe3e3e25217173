import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, cleanEnv, exited, runCli, spawnCli, waitFor } from '../helpers/cli.ts';

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

describe('gateway demo: two hospitals on one machine', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-demo-'));
  chmodSync(dir, 0o755); // the postgres OS user must reach the data directories below it when we run as root
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('exchanges records and a CT image from A to B, shows receipts and checkpoints, stops on Ctrl-C', async () => {
    const demo = spawnCli(['demo', '--keep', '--dir', dir], cleanEnv());
    try {
      // Done with its steps, or exited early (then the output says why).
      await waitFor(
        async () => demo.exitCode !== null || demo.output().includes('press Ctrl-C'),
        110_000,
        'the demo finished its steps',
      );
      if (demo.exitCode !== null) throw new Error(`the demo exited (${demo.exitCode}) before its end`);
    } catch (err) {
      demo.kill('SIGINT');
      await exited(demo, 60_000).catch(() => demo.kill('SIGKILL'));
      throw new Error(`${(err as Error).message}\n${demo.output()}`);
    }
    const out = demo.output();
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
    // --keep: both still serve until Ctrl-C.
    const url = /\$ A=(http:\/\/127\.0\.0\.1:\d+) B=(http:\/\/127\.0\.0\.1:\d+)/.exec(out);
    for (const base of [url?.[1], url?.[2]]) expect((await fetch(`${base}/ready`)).status).toBe(200);

    demo.kill('SIGINT');
    expect(await exited(demo, 60_000)).toBe(0);
    expect(demo.output().trimEnd().endsWith('stopped')).toBe(true);
    // Both shut down gracefully, embedded PostgreSQL included.
    for (const side of ['a', 'b']) expect(existsSync(join(dir, side, 'pg', 'postmaster.pid'))).toBe(false);
    for (const base of [url?.[1], url?.[2]]) await expect(fetch(`${base}/ready`)).rejects.toThrow();

    // Run again on the same folder, without --keep: it reuses keys and databases and exits by itself.
    rmSync(join(dir, 'b', 'ehr-received'), { recursive: true });
    const again = await runCli(['demo', '--dir', dir], cleanEnv(), 60_000);
    expect(again.code, again.stderr + again.stdout).toBe(0);
    expect(again.stdout).toContain('(registered by an earlier run)');
    expect(again.stdout).toContain('done: 4 of 4 items arrived at B byte for byte');
    expectPulledByteForByte(dir);
  }, 240_000);
});

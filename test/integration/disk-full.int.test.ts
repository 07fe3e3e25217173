import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { toErrorReply } from '../../plugins/error-reply.ts';
import { NODE } from '../helpers/cli.ts';

// A full disk is real here: a 1 MiB tmpfs in a private mount namespace (unshare -m, as root, which .ci/run is),
// and /dev/full, which answers every write with ENOSPC.
const dir = mkdtempSync(join(tmpdir(), 'gw-diskfull-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a full disk', () => {
  it('fails the imaging file with ENOSPC and leaves nothing behind', () => {
    const child = join(import.meta.dirname, '../helpers/disk-full-child.ts');
    const r = spawnSync(
      'unshare',
      ['-m', 'sh', '-c', `mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" "$3" "$1"`, 'sh', dir, NODE, child],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { failedAt?: string; code?: string; left: string[] };
    expect(out.failedAt).toBeDefined(); // the write or the commit said so: never a silent short file
    expect(out.code).toBe('ENOSPC');
    expect(out.left).toEqual([]); // discard removed the partial file
  });

  it('is answered 507 INSUFFICIENT_STORAGE with Retry-After, saying what to do', () => {
    let enospc: unknown;
    try {
      writeFileSync('/dev/full', 'x');
    } catch (err) {
      enospc = err;
    }
    expect((enospc as { code?: string }).code).toBe('ENOSPC');
    const reply = toErrorReply(enospc, 'req-1');
    expect(reply.status).toBe(507);
    expect(reply.retryAfter).toBe(60);
    expect(reply.serverFault).toBe(true); // logged for the operator
    expect(reply.outcome.issue[0]).toMatchObject({
      code: 'transient',
      details: { coding: [{ code: 'INSUFFICIENT_STORAGE' }] },
    });
    expect(reply.outcome.issue[0]?.diagnostics).toMatch(/no storage left.*retry later/);
  });

  it("maps PostgreSQL's disk_full (SQLSTATE 53100) the same way", () => {
    const reply = toErrorReply(
      Object.assign(new Error('could not extend file: No space left on device'), { code: '53100' }),
      'req-2',
    );
    expect(reply.status).toBe(507);
    expect(reply.outcome.issue[0]?.diagnostics).not.toMatch(/extend file/); // the database's own text stays in the log
  });
});

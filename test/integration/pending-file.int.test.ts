import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PendingFile, writeAll } from '../../src/imaging/sealed-files.ts';

// PendingFile flushes to disk in the background every 32 MiB while writes go on;
// these check that the overlap never reorders, loses or leaves bytes.
const dir = mkdtempSync(join(tmpdir(), 'gw-pending-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('PendingFile', () => {
  it('copies what it is given: the caller may reuse its buffer as soon as write() resolves', async () => {
    const file = await PendingFile.create(join(dir, 'reuse.bin'));
    const scratch = Buffer.alloc(300 * 1024);
    const want = createHash('sha256');
    for (let i = 0; i < 20; i++) {
      scratch.fill(i); // the same buffer, refilled each time (slabs are 512 KiB, so writes straddle them)
      want.update(scratch);
      await file.write(scratch);
    }
    await file.commit();
    expect(
      createHash('sha256')
        .update(readFileSync(join(dir, 'reuse.bin')))
        .digest('hex'),
    ).toBe(want.digest('hex'));
  });

  it('commits every byte in order across several background flushes', async () => {
    const file = await PendingFile.create(join(dir, 'big.jwe'));
    const want = createHash('sha256');
    for (let i = 0; i < 80; i++) {
      const chunk = randomBytes(1024 * 1024 - i); // uneven sizes cross the coalescing and sync boundaries
      want.update(chunk);
      await file.write(chunk);
    }
    await file.commit();
    const got = readFileSync(join(dir, 'big.jwe'));
    expect(got.length).toBe(file.length);
    expect(createHash('sha256').update(got).digest('hex')).toBe(want.digest('hex'));
    expect(readdirSync(dir).filter((n) => n.includes('.part-'))).toEqual([]);
  });

  it('discard while a background flush runs leaves nothing behind', async () => {
    const file = await PendingFile.create(join(dir, 'gone.jwe'));
    for (let i = 0; i < 40; i++) await file.write(randomBytes(1024 * 1024));
    await file.discard();
    await expect(file.write(randomBytes(10))).rejects.toThrow(/discarded/); // nothing more reaches the disk
    expect(existsSync(join(dir, 'gone.jwe'))).toBe(false);
    expect(readdirSync(dir).filter((n) => n.startsWith('gone'))).toEqual([]);
  });

  it('writeAll finishes a writev that the kernel cut short, in order, without repeating bytes', async () => {
    const path = join(dir, 'short.bin');
    const fh = await open(path, 'wx');
    const calls: number[] = [];
    // A real file whose writev(2) stops early: at most `cap` bytes per call, cut inside and across buffers.
    const caps = [5, 1, 4096, 3, 70_000, 2];
    const stingy = {
      writev: async (buffers: Buffer[]) => {
        const cap = caps[calls.length % caps.length]!;
        const parts: Buffer[] = [];
        let room = cap;
        for (const b of buffers) {
          if (!room) break;
          parts.push(b.subarray(0, room));
          room -= Math.min(room, b.length);
        }
        const r = await fh.writev(parts);
        calls.push(r.bytesWritten);
        return { bytesWritten: r.bytesWritten, buffers };
      },
    };
    const chunks = [randomBytes(9), randomBytes(1), randomBytes(100_000), randomBytes(7), randomBytes(4096)];
    await writeAll(stingy as never, chunks);
    await fh.close();
    expect(readFileSync(path).equals(Buffer.concat(chunks))).toBe(true);
    expect(calls.length).toBeGreaterThan(5); // it really was cut short, many times
    expect(calls.reduce((a, b) => a + b, 0)).toBe(Buffer.concat(chunks).length);
  });
});

import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PendingFile } from '../../src/exchange/imaging-files.ts';

// PendingFile flushes to disk in the background every 32 MiB while writes go on;
// these check that the overlap never reorders, loses or leaves bytes.
const dir = mkdtempSync(join(tmpdir(), 'gw-pending-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('PendingFile', () => {
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
    expect(existsSync(join(dir, 'gone.jwe'))).toBe(false);
    expect(readdirSync(dir).filter((n) => n.startsWith('gone'))).toEqual([]);
  });
});

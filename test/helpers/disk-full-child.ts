/**
 * Run inside `unshare -m` with a tiny tmpfs mounted at argv[2] (see
 * test/integration/disk-full.int.test.ts): writes a PendingFile bigger than
 * the file system, and prints what happened as one JSON line.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PendingFile } from '../../src/imaging/sealed-files.ts';

const dir = process.argv[2]!;
const file = await PendingFile.create(join(dir, 'study.jwe'));
let failedAt: 'write' | 'commit' | undefined;
let error: { code?: string; message: string } | undefined;
try {
  for (let i = 0; i < 64; i++) await file.write(randomBytes(64 * 1024)); // 4 MiB into a 1 MiB file system
} catch (err) {
  failedAt = 'write';
  error = err as Error & { code?: string };
}
if (!failedAt) {
  try {
    await file.commit();
  } catch (err) {
    failedAt = 'commit';
    error = err as Error & { code?: string };
  }
}
await file.discard();
console.log(JSON.stringify({ failedAt, code: error?.code, message: error?.message, left: readdirSync(dir) }));

import { createCipheriv, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, rmSync, statSync } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * The raw streaming ceiling of the imaging target, shared by the imaging benches: the file
 * through read + AES-256-GCM + base64url + write with node:crypto, one pass,
 * nothing else. Returns MiB/s; `out` is removed afterwards.
 */
export async function rawCeiling(path: string, out: string): Promise<number> {
  const cipher = createCipheriv('aes-256-gcm', randomBytes(32), randomBytes(12));
  let carry = Buffer.alloc(0);
  const b64 = new Transform({
    transform(chunk: Buffer, _e, done) {
      const data = Buffer.concat([carry, cipher.update(chunk)]);
      const whole = data.length - (data.length % 3);
      carry = data.subarray(whole);
      done(null, data.subarray(0, whole).toString('base64url'));
    },
    flush(done) {
      done(
        null,
        Buffer.concat([carry, cipher.final()]).toString('base64url') + '.' + cipher.getAuthTag().toString('base64url'),
      );
    },
  });
  const t0 = performance.now();
  await pipeline(createReadStream(path, { highWaterMark: 64 * 1024 }), b64, createWriteStream(out));
  const s = (performance.now() - t0) / 1000;
  rmSync(out);
  return statSync(path).size / (1024 * 1024) / s;
}

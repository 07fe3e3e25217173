import { createCipheriv, randomBytes, type CipherGCM } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { b64u } from './base64url.ts';
import { hybridAgreement, type RecipientKemKey } from './pq/hybrid-jwe.ts';
import { classicalAgreement, type RecipientKey } from './seal.ts';

/**
 * A compact JWE (ECDH-ES + A256GCM, or the protocol v2 hybrid with ML-KEM-768) written as a stream:
 *   header "." "" "." iv "." base64url(ciphertext) "." tag
 * The tag is the last segment, so the ciphertext can be emitted as it is
 * produced and the whole message is never held in memory. Same header
 * rules as seal.ts (no zip, no aad); cty names the plaintext's media type.
 */

/** Input bytes per base64url call: a multiple of 3 whose 64 KiB string stays in V8's young generation (cheap to collect). */
const ENCODE_SLICE = 48 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * base64url across chunk boundaries: only whole 3-byte groups are encoded;
 * the rest waits for the next chunk. Each chunk's output goes into one
 * buffer without first concatenating the input (this runs on every byte of
 * an imaging study).
 */
export class Base64UrlEncoder {
  #carry: Buffer = EMPTY;
  update(chunk: Buffer): Buffer {
    let start = 0;
    let head = EMPTY;
    if (this.#carry.length) {
      const need = 3 - this.#carry.length;
      if (chunk.length < need) {
        this.#carry = Buffer.concat([this.#carry, chunk]);
        return EMPTY;
      }
      head = Buffer.concat([this.#carry, chunk.subarray(0, need)]);
      start = need;
    }
    const whole = start + Math.floor((chunk.length - start) / 3) * 3;
    const out = Buffer.allocUnsafe(((head.length + whole - start) / 3) * 4);
    let at = head.length ? out.write(head.toString('base64url'), 0, 'latin1') : 0;
    for (let i = start; i < whole; i += ENCODE_SLICE)
      at += out.write(chunk.subarray(i, Math.min(whole, i + ENCODE_SLICE)).toString('base64url'), at, 'latin1');
    this.#carry = whole < chunk.length ? Buffer.from(chunk.subarray(whole)) : EMPTY; // copy: never pin the caller's chunk
    return out;
  }
  final(): Buffer {
    const rest = this.#carry.length ? Buffer.from(this.#carry.toString('base64url'), 'latin1') : EMPTY;
    this.#carry = EMPTY;
    return rest;
  }
}

/** The JWE writer's state: prefix (header, empty key, iv), then ciphertext, then the tag. */
export class JweStreamWriter {
  readonly protectedB64: string;
  readonly #cipher: CipherGCM;
  readonly #encoder = new Base64UrlEncoder();
  #prefix: Buffer | undefined;

  /** With `kem`, the protocol v2 form: the hybrid header of §14.2 (ek, kem_kid) and the CEK from Z || T. */
  constructor(recipient: RecipientKey, cty: string, kem?: RecipientKemKey) {
    const { header, cek } = kem ? hybridAgreement(recipient, kem) : classicalAgreement(recipient);
    this.protectedB64 = b64u(JSON.stringify({ ...header, cty }));
    const iv = randomBytes(12);
    this.#cipher = createCipheriv('aes-256-gcm', cek, iv);
    cek.fill(0); // the cipher holds its own copy of the key schedule
    this.#cipher.setAAD(Buffer.from(this.protectedB64, 'ascii'));
    this.#prefix = Buffer.from(`${this.protectedB64}..${b64u(iv)}.`, 'ascii');
  }

  #takePrefix(): Buffer[] {
    const p = this.#prefix;
    this.#prefix = undefined;
    return p ? [p] : [];
  }

  /** Encrypt a plaintext chunk; returns the JWE bytes that can be written now. */
  update(chunk: Buffer): Buffer {
    const body = this.#encoder.update(this.#cipher.update(chunk));
    const prefix = this.#prefix;
    if (!prefix) return body;
    this.#prefix = undefined;
    return Buffer.concat([prefix, body]);
  }

  /** The rest of the ciphertext, then "." and the tag. */
  final(): Buffer {
    const tail = this.#encoder.update(this.#cipher.final());
    return Buffer.concat([
      ...this.#takePrefix(),
      tail,
      this.#encoder.final(),
      Buffer.from(`.${b64u(this.#cipher.getAuthTag())}`, 'ascii'),
    ]);
  }
}

/** A Transform: plaintext in, compact JWE ASCII out. */
export function sealTransform(recipient: RecipientKey, cty: string, kem?: RecipientKemKey): Transform {
  const writer = new JweStreamWriter(recipient, cty, kem);
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      try {
        done(null, writer.update(chunk));
      } catch (err) {
        done(err as Error);
      }
    },
    flush(done) {
      try {
        done(null, writer.final());
      } catch (err) {
        done(err as Error);
      }
    },
  });
}

let seq = 0;
/** A temporary path beside `path`, so the final rename stays on one file system. */
export const tempPathFor = (path: string) => `${path}.part-${process.pid}-${Date.now()}-${seq++}`;

/**
 * Seal a plaintext stream into a file: written to a temporary name and
 * renamed into place only when complete (a crash leaves no half envelope
 * under the final name). Returns the file's length.
 */
export async function sealStreamToFile(
  source: Readable | AsyncIterable<Buffer>,
  recipient: RecipientKey,
  cty: string,
  path: string,
  kem?: RecipientKemKey,
): Promise<number> {
  const tmp = tempPathFor(path);
  const out = createWriteStream(tmp, { flags: 'wx', mode: 0o600 });
  try {
    await pipeline(source, sealTransform(recipient, cty, kem), out);
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  return out.bytesWritten;
}

import { createCipheriv, createDecipheriv, randomBytes, type CipherGCM } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { tempPathFor } from './stream-seal.ts';

/**
 * Where streamed plaintext goes while its JWE tag is not yet verified.
 * write() may be called many times; then exactly one of commit() (after the
 * tag and every check passed) or discard().
 */
export interface PlaintextSink {
  /** The JWE's protected header, parsed, before the first write (the tag authenticates it at the end). */
  begin?(header: Record<string, unknown>): void;
  write(chunk: Buffer): Promise<void>;
  commit(): Promise<void>;
  discard(): Promise<void>;
}

async function tempFile(nearPath: string): Promise<{ path: string; fh: FileHandle }> {
  const path = tempPathFor(nearPath);
  return { path, fh: await open(path, 'wx', 0o600) };
}

/** Plaintext into a temporary file beside dest, renamed to dest on commit, deleted on discard. */
export async function fileSink(dest: string): Promise<PlaintextSink> {
  const { path, fh } = await tempFile(dest);
  let closed = false;
  const close = async () => {
    if (!closed) {
      closed = true;
      await fh.close();
    }
  };
  return {
    write: async (chunk) => {
      await fh.write(chunk);
    },
    commit: async () => {
      await fh.sync();
      await close();
      await rename(path, dest);
    },
    discard: async () => {
      await close().catch(() => undefined);
      await unlink(path).catch(() => undefined);
    },
  };
}

/** Bytes of the spool read at a time. */
export const SPOOL_READ_SIZE = 64 * 1024;

export interface SpoolSink extends PlaintextSink {
  /** After commit: the plaintext again, decrypted from the spool; the file is deleted when the stream ends or fails. */
  read(): Readable;
}

/**
 * A spool for plaintext that must wait for its tag without resting on disk
 * in the clear: it is re-encrypted (AES-256-GCM) under a random key that
 * lives only in this process's memory. A crash leaves only ciphertext whose
 * key is gone. Reading it back checks the spool's own tag at the end and
 * fails the stream if the file was altered.
 */
export async function spoolSink(nearPath: string): Promise<SpoolSink> {
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const cipher: CipherGCM = createCipheriv('aes-256-gcm', key, iv);
  const { path, fh } = await tempFile(nearPath);
  let tag: Buffer | undefined;
  let closed = false;
  const remove = async () => {
    if (!closed) {
      closed = true;
      await fh.close().catch(() => undefined);
    }
    await unlink(path).catch(() => undefined);
    key.fill(0);
  };
  return {
    write: async (chunk) => {
      await fh.write(cipher.update(chunk));
    },
    commit: async () => {
      const rest = cipher.final();
      if (rest.length) await fh.write(rest);
      tag = cipher.getAuthTag();
      closed = true;
      await fh.close();
    },
    discard: remove,
    read: () => {
      if (!tag) throw new Error('spool read before commit');
      const decipher = createDecipheriv('aes-256-gcm', key, iv);
      decipher.setAuthTag(tag);
      // One buffer for the file's bytes, reused for every read: the decipher consumes them at once, and
      // only its output goes on. A fresh buffer per read would be garbage that outlives the transfer's pace.
      const piece = Buffer.allocUnsafe(SPOOL_READ_SIZE);
      let reader: FileHandle | undefined;
      const out = new Readable({
        // Opened before the first read; a destroy waits for it, so the handle is always closed.
        construct(callback) {
          open(path, 'r').then(
            (fh) => {
              reader = fh;
              callback();
            },
            (err: Error) => callback(err),
          );
        },
        read() {
          void (async () => {
            const { bytesRead } = await (reader as FileHandle).read(piece, 0, piece.length, null);
            if (bytesRead > 0) this.push(decipher.update(piece.subarray(0, bytesRead)));
            else {
              this.push(decipher.final()); // throws when the spool was altered
              this.push(null);
            }
          })().catch((err: unknown) => this.destroy(err as Error));
        },
        destroy(err, callback) {
          const closing = reader?.close().catch(() => undefined);
          reader = undefined;
          void Promise.resolve(closing).then(() => callback(err));
        },
      });
      out.once('close', () => void remove());
      return out;
    },
  };
}

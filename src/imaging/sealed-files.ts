import { mkdir, open, readdir, rename, stat, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config.ts';
import { GatewayError } from '../errors.ts';
import { required } from '../required.ts';
import { JweStreamWriter, tempPathFor } from '../jose/stream-seal.ts';
import type { RecipientKey } from '../jose/seal.ts';
import type { RecipientKemKey } from '../jose/pq/hybrid-jwe.ts';

/**
 * Where imaging files live: DATA_DIR/imaging/outbound (content JWEs sealed
 * to a partner, waiting for delivery) and DATA_DIR/imaging/inbox (content
 * JWEs received, still sealed to our HSM key). Never plaintext.
 */
export async function imagingDir(config: Pick<Config, 'dataDir'>, side: 'outbound' | 'inbox'): Promise<string> {
  const dir = join(config.dataDir, 'imaging', side);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Headroom left free beyond a submission's own files: the database, logs and other transfers need room too. */
const SPACE_HEADROOM = 64 * 1024 * 1024;

/**
 * Refuse up front (507) a submission whose sealed files cannot fit, instead
 * of failing after gigabytes have been read: `bytes` is what will be written.
 * The operator learns the figures from the log; the client only that it must retry.
 */
export async function ensureSpace(
  dir: string,
  bytes: number,
  log: (facts: object, msg: string) => void,
): Promise<void> {
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  if (free >= bytes + SPACE_HEADROOM) return;
  log({ needed: bytes, free, headroom: SPACE_HEADROOM, dir }, 'imaging submission refused: not enough free storage');
  throw new GatewayError(
    'INSUFFICIENT_STORAGE',
    `this submission needs about ${Math.ceil(bytes / 1048576)} MiB of storage once sealed, and the gateway has not got it; nothing was kept; retry later`,
    { retryAfter: 60 },
  );
}

/** Remove temporary files left by interrupted transfers of an earlier process (older than `minAgeMs`). */
export async function sweepPartials(dir: string, minAgeMs = 60 * 60 * 1000): Promise<number> {
  let removed = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.includes('.part-')) continue;
    const path = join(dir, name);
    const s = await stat(path).catch(() => undefined);
    if (s && Date.now() - s.mtimeMs > minAgeMs) {
      await unlink(path).catch(() => undefined);
      removed++;
    }
  }
  return removed;
}

/** writev(2) may write less than asked (disk full, signals, some file systems): loop until every byte is on its way. */
export async function writeAll(fh: Pick<FileHandle, 'writev'>, chunks: Buffer[]): Promise<void> {
  let rest = chunks;
  for (;;) {
    let done = (await fh.writev(rest)).bytesWritten;
    let whole = 0;
    for (const chunk of rest) {
      if (done < chunk.length) break;
      done -= chunk.length;
      whole++;
    }
    const [partial, ...later] = rest.slice(whole);
    if (!partial) return;
    rest = [partial.subarray(done), ...later];
  }
}

/**
 * Writes go through a few fixed buffers ("slabs") of this size, reused for
 * the whole file: one thread-pool write per slab instead of one per network
 * chunk (each hop wakes two threads, which is dear on a VM: context switches
 * per GiB fell from about 39,000 to 15,000; docs/decisions/0021-imaging-files-and-memory.md).
 * The caller's chunks are copied at once, so the caller may reuse them and
 * they are not kept alive while the disk catches up.
 */
const SLAB = 512 * 1024;
/** One filling, the others in flight: memory per file is SLABS × SLAB. */
const SLABS = 3;
/**
 * Flush to disk in the background every this many bytes: the disk then works
 * while the transfer goes on, and commit()'s final fsync only waits for the
 * tail instead of the whole file (about 1 s per GiB on this machine).
 */
const SYNC_EVERY = 32 * 1024 * 1024;

/** A file written under a temporary name, renamed into place by commit(), deleted by discard(). */
export class PendingFile {
  readonly path: string;
  readonly tmp: string;
  #fh: FileHandle | undefined;
  length = 0;
  private constructor(path: string, fh: FileHandle, tmp: string) {
    this.path = path;
    this.tmp = tmp;
    this.#fh = fh;
  }
  static async create(path: string): Promise<PendingFile> {
    const tmp = tempPathFor(path);
    return new PendingFile(path, await open(tmp, 'wx', 0o600), tmp);
  }
  /** Write-behind: slabs are written in order while the caller computes the next chunk. */
  #tail: Promise<unknown> = Promise.resolve();
  #failed: unknown;
  #free: Buffer[] = [];
  #allocated = 0;
  #slab: Buffer | undefined;
  #filled = 0;
  #waiting: Array<() => void> = [];
  #written = 0;
  #syncedUpTo = 0;
  #syncing: Promise<void> | undefined;
  /** Copies the chunk: the caller may reuse it as soon as this resolves. */
  async write(chunk: Buffer): Promise<void> {
    if (this.#failed) throw this.#failed;
    this.length += chunk.length;
    for (let at = 0; at < chunk.length;) {
      const slab = this.#slab ?? (this.#slab = await this.#takeSlab());
      const n = chunk.copy(slab, this.#filled, at);
      this.#filled += n;
      at += n;
      if (this.#filled === slab.length) this.#writeSlab();
    }
  }
  async #takeSlab(): Promise<Buffer> {
    for (;;) {
      if (this.#failed) throw this.#failed;
      const free = this.#free.pop();
      if (free) return free;
      if (this.#allocated < SLABS) {
        this.#allocated++;
        return Buffer.allocUnsafeSlow(SLAB); // not from Node's shared pool: this memory is reused, never garbage
      }
      await new Promise<void>((r) => this.#waiting.push(r));
    }
  }
  #writeSlab(): void {
    const slab = this.#slab;
    const bytes = this.#filled;
    this.#slab = undefined;
    this.#filled = 0;
    if (!slab || !bytes) {
      if (slab) this.#free.push(slab);
      return;
    }
    const fh = required(this.#fh, 'an open file until commit or discard');
    const returned = () => {
      this.#free.push(slab);
      this.#waiting.shift()?.();
    };
    this.#tail = this.#tail
      .then(() => {
        if (this.#failed) throw this.#failed; // an earlier write failed or the file was discarded: write no more
        return writeAll(fh, [slab.subarray(0, bytes)]);
      })
      .then(
        () => {
          this.#written += bytes;
          returned();
          this.#syncInBackground(fh);
        },
        (err: unknown) => {
          this.#failed ??= err;
          returned();
        },
      );
  }
  /** One background fdatasync at a time, alongside the writes (which it never blocks). */
  #syncInBackground(fh: FileHandle): void {
    if (this.#syncing || this.#written - this.#syncedUpTo < SYNC_EVERY) return;
    const upTo = this.#written;
    this.#syncing = fh.datasync().then(
      () => {
        this.#syncedUpTo = upTo;
        this.#syncing = undefined;
        if (this.#fh === fh) this.#syncInBackground(fh);
      },
      (err: unknown) => {
        this.#syncing = undefined;
        this.#failed ??= err;
      },
    );
  }
  async #flush(): Promise<void> {
    this.#writeSlab();
    await this.#tail;
    await this.#syncing;
    if (this.#failed) throw this.#failed;
  }
  async commit(): Promise<void> {
    await this.#flush();
    const fh = required(this.#fh, 'an open file until commit or discard');
    await fh.sync();
    await fh.close();
    this.#fh = undefined;
    await rename(this.tmp, this.path);
  }
  async discard(): Promise<void> {
    this.#slab = undefined;
    this.#filled = 0;
    this.#failed ??= new Error('discarded');
    await this.#tail.catch(() => undefined);
    await this.#syncing?.catch(() => undefined);
    await this.#fh?.close().catch(() => undefined);
    this.#fh = undefined;
    await unlink(this.tmp).catch(() => undefined);
    await unlink(this.path).catch(() => undefined);
  }
}

/** A streamed content JWE for one recipient, written to a pending file as the plaintext passes. */
export class SealedContentFile {
  readonly file: PendingFile;
  /** Also hands each JWE piece to a live transmission (cut-through delivery), if set. */
  tap: ((jwe: Buffer) => Promise<void>) | undefined;
  readonly #writer: JweStreamWriter;
  private constructor(file: PendingFile, writer: JweStreamWriter) {
    this.file = file;
    this.#writer = writer;
  }
  /** With `kem` the protocol v2 (hybrid) content envelope. */
  static async create(
    path: string,
    recipient: RecipientKey,
    cty: string,
    kem?: RecipientKemKey,
  ): Promise<SealedContentFile> {
    return new SealedContentFile(await PendingFile.create(path), new JweStreamWriter(recipient, cty, kem));
  }
  async write(plain: Buffer): Promise<void> {
    const jwe = this.#writer.update(plain);
    await this.file.write(jwe);
    await this.tap?.(jwe);
  }
  async finish(): Promise<void> {
    const jwe = this.#writer.final();
    await this.file.write(jwe);
    await this.tap?.(jwe);
    await this.file.commit();
  }
}

import { mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config.ts';
import { JweStreamWriter, tempPathFor } from '../jose/stream-seal.ts';
import type { RecipientKey } from '../jose/seal.ts';

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

const MAX_IN_FLIGHT = 8;

/** writev(2) may write less than asked: loop until every byte is on its way. */
async function writeAll(fh: FileHandle, chunks: Buffer[]): Promise<void> {
  let rest = chunks;
  for (;;) {
    let done = (await fh.writev(rest)).bytesWritten;
    while (rest.length && done >= rest[0]!.length) {
      done -= rest[0]!.length;
      rest = rest.slice(1);
    }
    if (!rest.length) return;
    rest = [rest[0]!.subarray(done), ...rest.slice(1)];
  }
}
const COALESCE = 128 * 1024;
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
  /** Write-behind: writes are chained (in order) and up to MAX_IN_FLIGHT run while the caller computes the next chunk. */
  #tail: Promise<unknown> = Promise.resolve();
  #inFlight = 0;
  #failed: unknown;
  /** Small chunks are gathered into one writev(2) of about COALESCE bytes: fewer system calls and thread-pool hops, no copy. Callers must not reuse a chunk they wrote. */
  #gather: Buffer[] = [];
  #gathered = 0;
  #written = 0;
  #syncedUpTo = 0;
  #syncing: Promise<void> | undefined;
  async write(chunk: Buffer): Promise<void> {
    if (this.#failed) throw this.#failed;
    if (!chunk.length) return;
    this.length += chunk.length;
    this.#gather.push(chunk);
    this.#gathered += chunk.length;
    if (this.#gathered >= COALESCE) await this.#writeGathered();
  }
  async #writeGathered(): Promise<void> {
    if (!this.#gathered) return;
    const chunks = this.#gather;
    const bytes = this.#gathered;
    this.#gather = [];
    this.#gathered = 0;
    const fh = this.#fh!;
    this.#inFlight++;
    const done = this.#tail.then(() => writeAll(fh, chunks)).then(
      () => {
        this.#inFlight--;
        this.#written += bytes;
        this.#syncInBackground(fh);
      },
      (err: unknown) => {
        this.#inFlight--;
        this.#failed ??= err;
      },
    );
    this.#tail = done;
    if (this.#inFlight > MAX_IN_FLIGHT) await done;
    if (this.#failed) throw this.#failed;
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
    await this.#writeGathered();
    await this.#tail;
    await this.#syncing;
    if (this.#failed) throw this.#failed;
  }
  async commit(): Promise<void> {
    await this.#flush();
    await this.#fh!.sync();
    await this.#fh!.close();
    this.#fh = undefined;
    await rename(this.tmp, this.path);
  }
  async discard(): Promise<void> {
    this.#gather = [];
    this.#gathered = 0;
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
  static async create(path: string, recipient: RecipientKey, cty: string): Promise<SealedContentFile> {
    return new SealedContentFile(await PendingFile.create(path), new JweStreamWriter(recipient, cty));
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

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
  async write(chunk: Buffer): Promise<void> {
    if (!chunk.length) return;
    this.length += chunk.length;
    await this.#fh!.write(chunk);
  }
  async commit(): Promise<void> {
    await this.#fh!.sync();
    await this.#fh!.close();
    this.#fh = undefined;
    await rename(this.tmp, this.path);
  }
  async discard(): Promise<void> {
    await this.#fh?.close().catch(() => undefined);
    this.#fh = undefined;
    await unlink(this.tmp).catch(() => undefined);
    await unlink(this.path).catch(() => undefined);
  }
}

/** A streamed content JWE for one recipient, written to a pending file as the plaintext passes. */
export class SealedContentFile {
  readonly file: PendingFile;
  readonly #writer: JweStreamWriter;
  private constructor(file: PendingFile, writer: JweStreamWriter) {
    this.file = file;
    this.#writer = writer;
  }
  static async create(path: string, recipient: RecipientKey, cty: string): Promise<SealedContentFile> {
    return new SealedContentFile(await PendingFile.create(path), new JweStreamWriter(recipient, cty));
  }
  write(plain: Buffer): Promise<void> {
    return this.file.write(this.#writer.update(plain));
  }
  async finish(): Promise<void> {
    await this.file.write(this.#writer.final());
    await this.file.commit();
  }
}

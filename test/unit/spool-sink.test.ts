import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SPOOL_READ_SIZE, spoolSink } from '../../src/jose/stream-sinks.ts';

const dir = mkdtempSync(join(tmpdir(), 'spool-sink-'));
const spoolFiles = (name: string) => readdirSync(dir).filter((f) => f.startsWith(name));
/** The spool files left once the deletion that follows a stream's close had its time (it is asynchronous). */
async function left(name: string): Promise<string[]> {
  for (const until = Date.now() + 5000; spoolFiles(name).length > 0 && Date.now() < until;)
    await new Promise((r) => setTimeout(r, 10));
  return spoolFiles(name);
}

async function spooled(name: string, plaintext: Buffer) {
  const sink = await spoolSink(join(dir, name));
  for (let at = 0; at < plaintext.length; at += 10_000) await sink.write(plaintext.subarray(at, at + 10_000));
  await sink.commit();
  return sink;
}

/** Every chunk kept, not consumed at once: a chunk the spool later overwrote would show here. */
async function keptChunks(stream: NodeJS.ReadableStream): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return chunks;
}

describe('spoolSink (plaintext re-encrypted while its tag is pending)', () => {
  it('gives the plaintext back across many reads, each chunk its own bytes, then deletes the spool', async () => {
    const plaintext = randomBytes(SPOOL_READ_SIZE * 5 + 123);
    const sink = await spooled('whole', plaintext);
    const [file] = spoolFiles('whole');
    // At rest the spool is ciphertext: no 32-byte run of the plaintext appears in it.
    expect(readFileSync(join(dir, file as string)).includes(plaintext.subarray(1000, 1032))).toBe(false);
    const chunks = await keptChunks(sink.read());
    expect(chunks.length).toBeGreaterThan(5);
    expect(Buffer.concat(chunks).equals(plaintext)).toBe(true);
    expect(await left('whole')).toEqual([]);
  });

  it('fails the stream when the spool file was altered, and deletes it', async () => {
    const plaintext = randomBytes(SPOOL_READ_SIZE * 2);
    const sink = await spooled('altered', plaintext);
    const path = join(dir, spoolFiles('altered')[0] as string);
    const bytes = readFileSync(path);
    bytes[SPOOL_READ_SIZE + 7] = (bytes[SPOOL_READ_SIZE + 7] as number) ^ 1;
    writeFileSync(path, bytes);
    await expect(keptChunks(sink.read())).rejects.toThrow(/authenticate/);
    expect(await left('altered')).toEqual([]);
    expect(existsSync(path)).toBe(false);
  });

  it('deletes the spool when the reader stops early', async () => {
    const sink = await spooled('early', randomBytes(SPOOL_READ_SIZE * 4));
    const stream = sink.read();
    for await (const _ of stream) break; // the consumer goes away after one chunk
    expect(await left('early')).toEqual([]);
  });

  it('closes its file when destroyed while the file is still being opened', async () => {
    const fds = () => readdirSync('/proc/self/fd').length;
    const before = fds();
    for (let i = 0; i < 20; i++) {
      const stream = (await spooled(`opening-${i}`, randomBytes(1000))).read();
      stream.read(0); // asks for data at once
      stream.destroy();
      await new Promise((r) => stream.once('close', r));
    }
    expect(await left('opening-')).toEqual([]);
    expect(fds()).toBe(before);
  });

  it('refuses a read before commit, and discard deletes the spool', async () => {
    const sink = await spoolSink(join(dir, 'uncommitted'));
    await sink.write(Buffer.from('not yet verified'));
    expect(() => sink.read()).toThrow(/before commit/);
    await sink.discard();
    expect(spoolFiles('uncommitted')).toEqual([]); // discard resolves once the file is gone
  });
});

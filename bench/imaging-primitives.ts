/**
 * The CPU cost of each primitive an imaging transfer cannot avoid, timed alone
 * in this process as CPU seconds (user + system) per GiB: SHA-256,
 * AES-256-GCM both ways, base64url both ways, page-cache file writes and
 * reads, and a loopback TCP transfer (sender and receiver together). Shared by
 * bench:imaging-floor (the floor of the whole pipeline) and bench:imaging
 * (each gateway's CPU against the floor of its own share).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';

const GIB = 1024 * 1024 * 1024;
const CHUNK = 64 * 1024; // the stream chunk size the gateways see

export interface PrimitiveCosts {
  sha256: number;
  encrypt: number;
  decrypt: number;
  base64urlEncode: number;
  /** Per GiB of base64url text (the gateway decodes into a buffer it owns). */
  base64urlDecode: number;
  fileWrite: number;
  fileRead: number;
  /** Both ends of one loopback connection. */
  tcpTransfer: number;
}

/** A sealed content file is base64url text: 4/3 of the DICOM it seals. */
const TEXT = 4 / 3;

/**
 * Per GiB of DICOM, what each side must do at the least (TCP charged half to each end):
 *   client  read the file (1), send it to A (TCP 1)
 *   A       receive it (TCP 1), SHA-256 (1), encrypt (1), base64url (1 → 4/3), write the sealed file (4/3),
 *           send it to B (TCP 4/3)
 *   B       receive it (TCP 4/3), base64url decode (4/3), decrypt (1), SHA-256 (1), write the sealed file (4/3)
 */
export function floors(c: PrimitiveCosts): { client: number; a: number; b: number; pipeline: number } {
  const half = c.tcpTransfer / 2;
  const client = c.fileRead + half;
  const a = half + c.sha256 + c.encrypt + c.base64urlEncode + TEXT * (c.fileWrite + half);
  const b = TEXT * (half + c.base64urlDecode + c.fileWrite) + c.decrypt + c.sha256;
  return { client, a, b, pipeline: client + a + b };
}

export async function primitiveCosts(root: string, size: number): Promise<PrimitiveCosts> {
  /** CPU seconds (user + system) that `work` takes, scaled to one GiB of input. */
  async function cpuPerGiB(work: () => void | Promise<void>): Promise<number> {
    const before = process.cpuUsage();
    await work();
    const used = process.cpuUsage(before);
    return ((used.user + used.system) / 1e6) * (GIB / size);
  }
  const chunks = (each: (c: Buffer) => void) => () => {
    const c = randomBytes(CHUNK);
    for (let done = 0; done < size; done += CHUNK) each(c);
  };
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const sha = createHash('sha256');
  const enc = createCipheriv('aes-256-gcm', key, iv);
  const dec = createDecipheriv('aes-256-gcm', key, iv);
  const text = randomBytes(CHUNK).toString('base64url');
  const decoded = Buffer.allocUnsafe(CHUNK);
  const written = join(root, 'write.out');
  const cost: PrimitiveCosts = {
    sha256: await cpuPerGiB(chunks((c) => sha.update(c))),
    encrypt: await cpuPerGiB(chunks((c) => enc.update(c))),
    decrypt: await cpuPerGiB(chunks((c) => dec.update(c))),
    base64urlEncode: await cpuPerGiB(chunks((c) => c.toString('base64url'))),
    base64urlDecode: await cpuPerGiB(chunks(() => decoded.write(text, 'base64url'))),
    fileWrite: await cpuPerGiB(() => fileWrite(written, size)),
    fileRead: await cpuPerGiB(() => fileRead(written)),
    tcpTransfer: await cpuPerGiB(() => tcpTransfer(size)),
  };
  rmSync(written);
  return cost;
}

async function tcpTransfer(size: number): Promise<void> {
  const server = createServer();
  const received = new Promise<void>((resolve) =>
    server.on('connection', (s: Socket) => {
      let got = 0;
      s.on('data', (d: Buffer) => (got += d.length)).on('end', () => (got === size ? resolve() : undefined));
    }),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  const block = randomBytes(256 * 1024);
  for (let sent = 0; sent < size; sent += block.length) {
    if (!client.write(block)) await new Promise((r) => client.once('drain', r));
  }
  client.end();
  await received;
  server.close();
}

function fileWrite(path: string, size: number): void {
  const fd = openSync(path, 'w');
  const c = randomBytes(CHUNK * 2); // 128 KiB writes, as the gateways gather them
  for (let done = 0; done < size; done += c.length) writeSync(fd, c);
  closeSync(fd);
}

function fileRead(path: string): void {
  const fd = openSync(path, 'r');
  const c = Buffer.allocUnsafe(CHUNK);
  while (readSync(fd, c) > 0);
  closeSync(fd);
}

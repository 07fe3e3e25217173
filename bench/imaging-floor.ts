/**
 * The floor under imaging throughput on this machine: how fast could
 * ANY implementation of the A-intake → B-available pipeline be here, with the
 * client, gateway A and gateway B on the same cores?
 *
 * Each primitive the pipeline cannot avoid is timed alone, in this process,
 * as CPU time (user + system) per GiB: SHA-256, AES-256-GCM both ways,
 * base64url both ways, page-cache file writes and reads, and a loopback TCP
 * transfer (sender and receiver). Per GiB of DICOM the pipeline needs:
 *   client  read the file (1), send it to A (TCP 1)
 *   A       SHA-256 (1), encrypt (1), base64url (1 → 4/3), write the sealed file (4/3), send it to B (TCP 4/3)
 *   B       base64url decode (4/3), decrypt (1), SHA-256 (1), write the sealed file (4/3)
 * The sum is a lower bound on the CPU the three processes need together. With
 * perfect overlap on every core and no other cost at all (no HTTP, no
 * streams, no GC, no fsync), the best throughput is cores / sum. In the same
 * run the bench measures the raw ceiling exactly as bench/imaging.ts does
 * (read + AES-256-GCM + base64url + write, one pass), and prints the best
 * gateway/raw ratio this machine allows.
 *
 * Then the bare pipeline (bench/imaging-bare.ts): the same three processes
 * doing only those primitives over node:http, with no gateway around them.
 *
 * Run: npm run bench:imaging-floor [-- MiB]   (default 1024 MiB)
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { barePipeline } from './imaging-bare.ts';
import { rawCeiling } from './imaging-raw.ts';
import { writeSyntheticDicom } from '../test/helpers/imaging.ts';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const SIZE = Number(process.argv[2] ?? 1024) * MIB;
const CHUNK = 64 * 1024; // the stream chunk size the gateways see
const root = mkdtempSync(join(tmpdir(), 'gw-bench-floor-'));

/** CPU seconds (user + system) that `work` takes, scaled to one GiB of input. */
async function cpuPerGiB(work: () => void | Promise<void>): Promise<number> {
  const before = process.cpuUsage();
  await work();
  const used = process.cpuUsage(before);
  return ((used.user + used.system) / 1e6) * (GIB / SIZE);
}

function chunks(each: (c: Buffer) => void): () => void {
  const c = randomBytes(CHUNK);
  return () => {
    for (let done = 0; done < SIZE; done += CHUNK) each(c);
  };
}

async function tcpTransfer(): Promise<void> {
  const server = createServer();
  const received = new Promise<void>((resolve) =>
    server.on('connection', (s: Socket) => {
      let got = 0;
      s.on('data', (d: Buffer) => (got += d.length)).on('end', () => (got === SIZE ? resolve() : undefined));
    }),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  const block = randomBytes(256 * 1024);
  for (let sent = 0; sent < SIZE; sent += block.length) {
    if (!client.write(block)) await new Promise((r) => client.once('drain', r));
  }
  client.end();
  await received;
  server.close();
}

function fileWrite(path: string): () => void {
  return () => {
    const fd = openSync(path, 'w');
    const c = randomBytes(CHUNK * 2); // 128 KiB writes, as the gateways gather them
    for (let done = 0; done < SIZE; done += c.length) writeSync(fd, c);
    closeSync(fd);
  };
}

function fileRead(path: string): () => void {
  return () => {
    const fd = openSync(path, 'r');
    const c = Buffer.allocUnsafe(CHUNK);
    while (readSync(fd, c) > 0);
    closeSync(fd);
  };
}

async function main(): Promise<void> {
  const cores = cpus().length;
  console.log(
    `# imaging floor: ${SIZE / MIB} MiB; ${cores} cores (${cpus()[0]?.model}); load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const study = join(root, 'study.dcm');
  await writeSyntheticDicom(study, SIZE);
  const raw = await rawCeiling(study, join(root, 'raw.out'));

  const key = randomBytes(32);
  const iv = randomBytes(12);
  const sha = createHash('sha256');
  const enc = createCipheriv('aes-256-gcm', key, iv);
  const dec = createDecipheriv('aes-256-gcm', key, iv);
  const text = randomBytes(CHUNK).toString('base64url');
  const decoded = Buffer.allocUnsafe(CHUNK);
  const written = join(root, 'write.out');
  const cost = {
    sha256: await cpuPerGiB(chunks((c) => sha.update(c))),
    encrypt: await cpuPerGiB(chunks((c) => enc.update(c))),
    decrypt: await cpuPerGiB(chunks((c) => dec.update(c))),
    base64urlEncode: await cpuPerGiB(chunks((c) => c.toString('base64url'))),
    // per GiB of base64url text (the gateway decodes into a buffer it owns)
    base64urlDecode: await cpuPerGiB(chunks(() => decoded.write(text, 'base64url'))),
    fileWrite: await cpuPerGiB(fileWrite(written)),
    fileRead: await cpuPerGiB(fileRead(written)),
    tcpTransfer: await cpuPerGiB(tcpTransfer),
  };
  rmSync(written);
  const text43 = 4 / 3;
  const floor =
    cost.fileRead +
    cost.tcpTransfer + // client
    cost.sha256 +
    cost.encrypt +
    cost.base64urlEncode +
    text43 * (cost.fileWrite + cost.tcpTransfer) + // A
    text43 * (cost.base64urlDecode + cost.fileWrite) +
    cost.decrypt +
    cost.sha256; // B
  const best = (cores / floor) * 1024; // MiB/s with perfect overlap and nothing but the primitives
  for (const [name, s] of Object.entries(cost)) console.log(`| ${name} | ${(s * 1000).toFixed(0)} CPU-ms per GiB |`);
  console.log(`| pipeline floor (client + A + B) | ${floor.toFixed(2)} CPU-s per GiB |`);
  console.log(`| best possible on ${cores} cores | ${best.toFixed(0)} MiB/s |`);
  console.log(`| raw ceiling (read + AES-256-GCM + base64url + write) | ${raw.toFixed(0)} MiB/s |`);
  console.log(`| best possible gateway / raw | ${(best / raw).toFixed(2)} |`);
  const bare = await barePipeline(study, root);
  if (!bare.same) throw new Error('bare pipeline: B deciphered other bytes than A sealed');
  console.log(`| bare pipeline: client → A → B, primitives only | ${bare.mibs.toFixed(0)} MiB/s | ${bare.cpu} |`);
  console.log(`| bare pipeline / raw | ${(bare.mibs / raw).toFixed(2)} |`);
}

try {
  await main();
} finally {
  rmSync(root, { recursive: true, force: true });
}

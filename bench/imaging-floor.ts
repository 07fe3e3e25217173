/**
 * The floor under imaging throughput on this machine (issue 6): how fast could
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
 * Then the bare pipeline: the same three processes doing only those
 * primitives, over node:http on loopback, with no gateway around them (no
 * DICOM checks, database, HSM, multipart, receipt): client → A (SHA-256,
 * encrypt, base64url, write + fdatasync every 32 MiB, forward) → B (write +
 * fdatasync, decode, decrypt, SHA-256). What it reaches is what a lean Node
 * implementation of this design gets on this machine; bench/imaging.ts
 * measures the gateway against the same raw ceiling.
 *
 * Run: npm run bench:imaging-floor [-- MiB]   (default 1024 MiB)
 */
import { spawn } from 'node:child_process';
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer as createHttpServer, request, type IncomingMessage } from 'node:http';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { rawCeiling } from './imaging-raw.ts';
import { writeSyntheticDicom } from '../test/helpers/imaging.ts';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const SIZE = Number(process.argv[2] ?? 1024) * MIB;
const CHUNK = 64 * 1024; // the stream chunk size the gateways see
const role = process.argv[3];
const root = role ? process.argv[4]! : mkdtempSync(join(tmpdir(), 'gw-bench-floor-'));
const KEY = Buffer.alloc(32, 7);
const IV = Buffer.alloc(12, 1);
const SYNC_EVERY = 32 * MIB;

/** CPU seconds (user + system) that `work` takes, scaled to one GiB of input. */
async function cpuPerGiB(work: () => void | Promise<void>): Promise<number> {
  const before = process.cpuUsage();
  await work();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1e6 * (GIB / SIZE);
}

function chunks(each: (c: Buffer) => void): () => void {
  const c = randomBytes(CHUNK);
  return () => {
    for (let done = 0; done < SIZE; done += CHUNK) each(c);
  };
}

async function tcpTransfer(): Promise<void> {
  const server = createServer();
  const received = new Promise<void>((resolve) => server.on('connection', (s: Socket) => {
    let got = 0;
    s.on('data', (d: Buffer) => (got += d.length)).on('end', () => (got === SIZE ? resolve() : undefined));
  }));
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

/**
 * A file written behind the caller, in order, with a background fdatasync
 * every 32 MiB and one at the end, as the gateways write theirs (write()
 * waits only when 8 writes are queued; close() waits for everything).
 */
async function syncedFile(path: string): Promise<{ write(b: Buffer): Promise<void>; close(): Promise<void> }> {
  const fh = await open(path, 'w');
  let tail: Promise<unknown> = Promise.resolve();
  let syncing: Promise<unknown> = Promise.resolve();
  let unsynced = 0;
  let inFlight = 0;
  return {
    async write(b) {
      inFlight++;
      tail = tail.then(() => fh.write(b)).then(() => inFlight--);
      if (inFlight > 8) await tail; // bounded, like the gateways' write-behind
      unsynced += b.length;
      if (unsynced >= SYNC_EVERY) {
        unsynced = 0;
        const upTo = tail;
        syncing = Promise.all([syncing, upTo]).then(() => fh.datasync());
      }
    },
    async close() {
      await tail;
      await syncing;
      await fh.datasync();
      await fh.close();
    },
  };
}

const answer = (req: IncomingMessage) => new Promise<string>((resolve) => {
  let text = '';
  req.setEncoding('utf8').on('data', (c: string) => (text += c)).on('end', () => resolve(text));
});

/** Bare gateway A: hash, encrypt, base64url, store and forward to B; answers with both digests. */
function bareA(port: number, bPort: number): void {
  createHttpServer(async (req, res) => {
    const file = await syncedFile(join(root, 'a.jwe'));
    const cipher = createCipheriv('aes-256-gcm', KEY, IV);
    const hash = createHash('sha256');
    const toB = request({ port: bPort, method: 'POST', host: '127.0.0.1' });
    const receipt = new Promise<string>((r) => toB.on('response', (rs) => void answer(rs).then(r)));
    let carry = Buffer.alloc(0);
    const send = async (plain: Buffer, last: boolean) => {
      hash.update(plain);
      const ct = Buffer.concat([carry, cipher.update(plain), ...(last ? [cipher.final()] : [])]);
      const whole = last ? ct.length : ct.length - (ct.length % 3);
      carry = ct.subarray(whole);
      const text = Buffer.from(ct.subarray(0, whole).toString('base64url'), 'latin1');
      await file.write(text);
      if (!toB.write(text)) await new Promise((r) => toB.once('drain', r));
    };
    for await (const chunk of req as AsyncIterable<Buffer>) await send(chunk, false);
    await send(Buffer.alloc(0), true);
    toB.end();
    await file.close();
    res.end(`${hash.digest('hex')} ${await receipt}`);
  }).listen(port, '127.0.0.1', () => process.send?.('ready'));
}

/** Bare gateway B: store the text, decode, decrypt, hash; answers with the digest. */
function bareB(port: number): void {
  createHttpServer(async (req, res) => {
    const file = await syncedFile(join(root, 'b.jwe'));
    const decipher = createDecipheriv('aes-256-gcm', KEY, IV);
    const hash = createHash('sha256');
    const scratch = Buffer.allocUnsafe(256 * 1024);
    let carry = '';
    for await (const chunk of req as AsyncIterable<Buffer>) {
      await file.write(chunk);
      const text = carry + chunk.toString('latin1');
      const whole = text.length - (text.length % 4);
      carry = text.slice(whole);
      hash.update(decipher.update(scratch.subarray(0, scratch.write(text.slice(0, whole), 'base64url'))));
    }
    hash.update(decipher.update(Buffer.from(carry, 'base64url')));
    await file.close();
    res.end(hash.digest('hex'));
  }).listen(port, '127.0.0.1', () => process.send?.('ready'));
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Client → bare A → bare B; MiB/s from the first byte sent to B's answer reaching the client. */
async function barePipeline(study: string): Promise<{ mibs: number; cpu: string; same: boolean }> {
  const [aPort, bPort] = [19000 + Math.floor(Math.random() * 500), 19600 + Math.floor(Math.random() * 500)];
  // argv: MiB, role, root, ports
  const start = ([name, ...ports]: string[]) => {
    const child = spawn(process.execPath, [import.meta.filename, String(SIZE / MIB), name!, root, ...ports], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    return new Promise<typeof child>((r) => child.once('message', () => r(child)));
  };
  const b = await start(['bare-b', String(bPort)]);
  const a = await start(['bare-a', String(aPort), String(bPort)]);
  try {
    const cpu0 = { a: cpuSeconds(a.pid!), b: cpuSeconds(b.pid!), me: process.cpuUsage() };
    const t0 = performance.now();
    const body = await new Promise<string>((resolve, reject) => {
      const up = request({ port: aPort, host: '127.0.0.1', method: 'POST', headers: { 'content-length': SIZE } }, (rs) => void answer(rs).then(resolve));
      up.on('error', reject);
      createReadStream(study, { highWaterMark: 1024 * 1024 }).pipe(up); // as the EHR in bench/imaging.ts
    });
    const s = (performance.now() - t0) / 1000;
    const me = process.cpuUsage(cpu0.me);
    const [plainA, plainB] = body.split(' ');
    return {
      mibs: SIZE / MIB / s,
      cpu: `client ${((me.user + me.system) / 1e6).toFixed(1)} s, A ${(cpuSeconds(a.pid!) - cpu0.a).toFixed(1)} s, B ${(cpuSeconds(b.pid!) - cpu0.b).toFixed(1)} s in ${s.toFixed(1)} s`,
      same: Boolean(plainA) && plainA === plainB,
    };
  } finally {
    a.kill();
    b.kill();
  }
}

async function main(): Promise<void> {
  const cores = cpus().length;
  console.log(`# imaging floor: ${SIZE / MIB} MiB; ${cores} cores (${cpus()[0]?.model}); load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
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
    cost.fileRead + cost.tcpTransfer // client
    + cost.sha256 + cost.encrypt + cost.base64urlEncode + text43 * (cost.fileWrite + cost.tcpTransfer) // A
    + text43 * (cost.base64urlDecode + cost.fileWrite) + cost.decrypt + cost.sha256; // B
  const best = cores / floor * 1024; // MiB/s with perfect overlap and nothing but the primitives
  for (const [name, s] of Object.entries(cost)) console.log(`| ${name} | ${(s * 1000).toFixed(0)} CPU-ms per GiB |`);
  console.log(`| pipeline floor (client + A + B) | ${floor.toFixed(2)} CPU-s per GiB |`);
  console.log(`| best possible on ${cores} cores | ${best.toFixed(0)} MiB/s |`);
  console.log(`| raw ceiling (read + AES-256-GCM + base64url + write) | ${raw.toFixed(0)} MiB/s |`);
  console.log(`| best possible gateway / raw | ${(best / raw).toFixed(2)} |`);
  const bare = await barePipeline(study);
  if (!bare.same) throw new Error('bare pipeline: B deciphered other bytes than A sealed');
  console.log(`| bare pipeline: client → A → B, primitives only | ${bare.mibs.toFixed(0)} MiB/s | ${bare.cpu} |`);
  console.log(`| bare pipeline / raw | ${(bare.mibs / raw).toFixed(2)} |`);
}

if (role === 'bare-a') bareA(Number(process.argv[5]), Number(process.argv[6]));
else if (role === 'bare-b') bareB(Number(process.argv[5]));
else {
  try {
    await main();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/**
 * The bare imaging pipeline: client → A → B as three processes
 * doing only the primitives the gateways cannot avoid, over node:http on
 * loopback, with no gateway around them (no DICOM checks, database, HSM,
 * multipart or receipt):
 *   A  SHA-256, AES-256-GCM, base64url, write + fdatasync every 32 MiB, forward
 *   B  write + fdatasync, base64url decode, decrypt, SHA-256
 * Both imaging benches run it against the raw pass of the same run: what it
 * reaches is what a lean Node implementation of this design gets on the
 * machine, and gateway / bare is the cost of the gateway itself.
 *
 * Run alone, this file is one of the two servers: node imaging-bare.ts bare-a|bare-b DIR PORT [B_PORT]
 */
import { spawn } from 'node:child_process';
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer as createHttpServer, request, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { freePort } from '../test/helpers/ports.ts';
import { cpuSeconds } from './proc-stats.ts';

const MIB = 1024 * 1024;
const KEY = Buffer.alloc(32, 7);
const IV = Buffer.alloc(12, 1);
const SYNC_EVERY = 32 * MIB;

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

const answer = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let text = '';
    req
      .setEncoding('utf8')
      .on('data', (c: string) => (text += c))
      .on('end', () => resolve(text));
  });

/** Bare gateway A: hash, encrypt, base64url, store and forward to B; answers with both digests. */
function bareA(root: string, port: number, bPort: number): void {
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
function bareB(root: string, port: number): void {
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

/** Client → bare A → bare B; MiB/s from the first byte sent to B's answer reaching the client. */
export async function barePipeline(study: string, root: string): Promise<{ mibs: number; cpu: string; same: boolean }> {
  const size = statSync(study).size;
  const [aPort, bPort] = [await freePort(), await freePort()];
  const start = ([name, ...ports]: string[]) => {
    const child = spawn(process.execPath, [import.meta.filename, name!, root, ...ports], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new Promise<typeof child>((r) => child.once('message', () => r(child)));
  };
  const b = await start(['bare-b', String(bPort)]);
  const a = await start(['bare-a', String(aPort), String(bPort)]);
  try {
    const cpu0 = { a: cpuSeconds(a.pid!), b: cpuSeconds(b.pid!), me: process.cpuUsage() };
    const t0 = performance.now();
    const body = await new Promise<string>((resolve, reject) => {
      const up = request(
        { port: aPort, host: '127.0.0.1', method: 'POST', headers: { 'content-length': size } },
        (rs) => void answer(rs).then(resolve),
      );
      up.on('error', reject);
      createReadStream(study, { highWaterMark: 1024 * 1024 }).pipe(up); // as the EHR in bench/imaging.ts
    });
    const s = (performance.now() - t0) / 1000;
    const me = process.cpuUsage(cpu0.me);
    const [plainA, plainB] = body.split(' ');
    return {
      mibs: size / MIB / s,
      cpu: `client ${((me.user + me.system) / 1e6).toFixed(1)} s, A ${(cpuSeconds(a.pid!) - cpu0.a).toFixed(1)} s, B ${(cpuSeconds(b.pid!) - cpu0.b).toFixed(1)} s in ${s.toFixed(1)} s`,
      same: Boolean(plainA) && plainA === plainB,
    };
  } finally {
    a.kill();
    b.kill();
  }
}

if (process.argv[1] === import.meta.filename) {
  const [role, root, port, bPort] = process.argv.slice(2);
  if (role === 'bare-a') bareA(root!, Number(port), Number(bPort));
  else if (role === 'bare-b') bareB(root!, Number(port));
  else throw new Error('usage: imaging-bare.ts bare-a|bare-b DIR PORT [B_PORT]');
}

import { createECDH, createHash, generateKeyPairSync } from 'node:crypto';
import { createReadStream, rmSync } from 'node:fs';
import { Readable } from 'node:stream';
import { sealStreamToFile } from './src/jose/stream-seal.ts';
import { openStream } from './src/jose/stream-open.ts';
import { nullSink } from './src/jose/stream-sinks.ts';
import { multipartParts } from './src/imaging/multipart.ts';
import { PendingFile } from './src/exchange/imaging-files.ts';
const MB = 1 << 20; const N = 256;
const ecdh = createECDH('prime256v1'); ecdh.generateKeys();
const pubRaw = ecdh.getPublicKey();
const rk = { kty: 'EC', crv: 'P-256', x: pubRaw.subarray(1, 33).toString('base64url'), y: pubRaw.subarray(33).toString('base64url'), kid: 'k' };
const hsm = { deriveConcatKdf: async (_id: string, epk: Buffer, _c: number, other: Buffer) => { const z = ecdh.computeSecret(epk); return createHash('sha256').update(Buffer.from([0,0,0,1])).update(z).update(other).digest(); } };
const block = Buffer.alloc(64 * 1024, 7);
async function* plain() { for (let i = 0; i < N * 16; i++) yield block; }
await sealStreamToFile(Readable.from(plain()), rk, 'application/dicom', '/tmp/p.jwe');
const opts = { hsm: hsm as any, kdf: 'in-token' as const, resolveKey: async () => ({ hsmId: 'x', crv: 'P-256' as const, kid: 'k' }) };
let t = performance.now();
await openStream(createReadStream('/tmp/p.jwe', { highWaterMark: 64 * 1024 }), opts, nullSink());
console.log('openStream only', (N / ((performance.now() - t) / 1000)).toFixed(0), 'MiB/s');
async function* body() { yield Buffer.from('--b\r\nContent-Type: application/jose\r\n\r\n'); for await (const c of createReadStream('/tmp/p.jwe', { highWaterMark: 64 * 1024 })) yield c as Buffer; yield Buffer.from('\r\n--b--\r\n'); }
t = performance.now();
for await (const p of multipartParts(body(), 'b', { maxParts: 3 })) {
  const f = await PendingFile.create('/tmp/p2.jwe');
  async function* tee() { for await (const b of p.body) { await f.write(b); yield b; } }
  await openStream(tee(), opts, nullSink());
  await f.commit();
}
console.log('multipart+tee+openStream', (N / ((performance.now() - t) / 1000)).toFixed(0), 'MiB/s');
rmSync('/tmp/p.jwe'); rmSync('/tmp/p2.jwe');

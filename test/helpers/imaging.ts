import { existsSync, readdirSync, statSync } from 'node:fs';
import { deflateRawSync } from 'node:zlib';
import { join } from 'node:path';

/** The DICOM corpus copied from the shared corpora (dicomParser testImages, MIT; see test/fixtures/dicom/LICENSE). */
export const DICOM_DIR = join(import.meta.dirname, '../fixtures/dicom');

export function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((n) =>
    statSync(join(dir, n)).isDirectory() ? filesUnder(join(dir, n)) : [join(dir, n)],
  );
}

/** Every DICOM test file of the corpus (the fixtures directory also holds README, LICENSE and SOURCE_COMMIT). */
export const DICOM_FIXTURES = filesUnder(DICOM_DIR)
  .filter((f) => !/(\.md|LICENSE|SOURCE_COMMIT)$/.test(f))
  .sort();

export async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

/** One DICOM data element, explicit VR little endian, value padded to even length. */
function element(group: number, elem: number, vr: string, value: Buffer, pad = 0x20): Buffer {
  const v = value.length % 2 ? Buffer.concat([value, Buffer.from([pad])]) : value;
  const long = ['OB', 'OW', 'SQ', 'UN', 'UT'].includes(vr);
  const h = Buffer.alloc(long ? 12 : 8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(elem, 2);
  h.write(vr, 4, 'latin1');
  if (long) h.writeUInt32LE(v.length, 8);
  else h.writeUInt16LE(v.length, 6);
  return Buffer.concat([h, v]);
}

const ui = (g: number, e: number, uid: string) => element(g, e, 'UI', Buffer.from(uid, 'latin1'), 0);

/**
 * A synthetic CT instance of exactly `bytes` bytes (Part 10, explicit VR
 * little endian): file meta, identifying attributes, then one OW pixel data
 * element filled with a repeated random block. Written as a stream, in
 * constant memory, so it can be gigabytes.
 */
export async function writeSyntheticDicom(path: string, bytes: number, seed = 'bench'): Promise<void> {
  const { createWriteStream } = await import('node:fs');
  const { createHash, randomBytes } = await import('node:crypto');
  const sopClass = '1.2.840.10008.5.1.4.1.1.2';
  const sop = `2.25.${BigInt('0x' + createHash('sha256').update(seed).digest('hex').slice(0, 24)).toString()}`;
  const metaBody = Buffer.concat([
    element(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    ui(0x0002, 0x0002, sopClass),
    ui(0x0002, 0x0003, sop),
    ui(0x0002, 0x0010, '1.2.840.10008.1.2.1'),
    ui(0x0002, 0x0012, '2.25.1234567890'),
  ]);
  const groupLength = element(0x0002, 0x0000, 'UL', Buffer.alloc(4));
  groupLength.writeUInt32LE(metaBody.length, 8);
  const dataSet = Buffer.concat([
    ui(0x0008, 0x0016, sopClass),
    ui(0x0008, 0x0018, sop),
    element(0x0008, 0x0060, 'CS', Buffer.from('CT')),
    element(0x0010, 0x0020, 'LO', Buffer.from(`SYN-${seed}`)),
    ui(0x0020, 0x000d, '2.25.424242'),
    ui(0x0020, 0x000e, '2.25.424243'),
    element(0x0020, 0x0013, 'IS', Buffer.from('1')),
  ]);
  const head = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), groupLength, metaBody, dataSet]);
  const pixelLength = bytes - head.length - 12;
  if (pixelLength < 0 || pixelLength % 2)
    throw new Error('synthetic DICOM size must be even and above the header size');
  const pixelHeader = Buffer.alloc(12);
  pixelHeader.writeUInt16LE(0x7fe0, 0);
  pixelHeader.writeUInt16LE(0x0010, 2);
  pixelHeader.write('OW', 4, 'latin1');
  pixelHeader.writeUInt32LE(pixelLength, 8);
  const out = createWriteStream(path);
  let failed: Error | undefined;
  out.on('error', (err) => (failed = err));
  const write = (b: Buffer) =>
    new Promise<void>((res, rej) => (failed ? rej(failed) : out.write(b) ? res() : out.once('drain', res)));
  await write(Buffer.concat([head, pixelHeader]));
  const block = randomBytes(1024 * 1024);
  for (let left = pixelLength; left > 0; left -= block.length)
    await write(left >= block.length ? block : block.subarray(0, left));
  await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
}

/**
 * A deflated-transfer-syntax instance (1.2.840.10008.1.2.1.99) whose data set
 * inflates to about `inflated` bytes: the identifying attributes, then an OB
 * element of zeros, which deflate to almost nothing (60 MiB become about 60 KB).
 */
export function deflatedDicom(inflated: number, sop = '2.25.99887766'): Buffer {
  const sopClass = '1.2.840.10008.5.1.4.1.1.9.1.1';
  const metaBody = Buffer.concat([
    element(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    ui(0x0002, 0x0002, sopClass),
    ui(0x0002, 0x0003, sop),
    ui(0x0002, 0x0010, '1.2.840.10008.1.2.1.99'),
    ui(0x0002, 0x0012, '2.25.1234567890'),
  ]);
  const groupLength = element(0x0002, 0x0000, 'UL', Buffer.alloc(4));
  groupLength.writeUInt32LE(metaBody.length, 8);
  const attributes = Buffer.concat([
    ui(0x0008, 0x0016, sopClass),
    ui(0x0008, 0x0018, sop),
    element(0x0008, 0x0060, 'CS', Buffer.from('ECG')),
    ui(0x0020, 0x000d, '2.25.525252'),
    ui(0x0020, 0x000e, '2.25.525253'),
  ]);
  const filler = Math.max(0, inflated - attributes.length - 12) & ~1;
  const waveform = element(0x5400, 0x1010, 'OB', Buffer.alloc(filler));
  const dataSet = deflateRawSync(Buffer.concat([attributes, waveform]), { level: 9 });
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), groupLength, metaBody, dataSet]);
}

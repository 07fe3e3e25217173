import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DicomStreamCheck, type DicomLimits } from '../../src/imaging/dicom.ts';
import { DICOM_DIR } from '../helpers/imaging.ts';
import { mutatedBytes, rawBytes } from './arbitraries.ts';
import { fuzz, returnsOr4xx } from './harness.ts';

/** The smallest head the configuration allows, so the streaming walk runs on the rest of larger inputs. */
const LIMITS: DicomLimits = { maxBytes: 4 * 1024 * 1024, headBytes: 64 * 1024, inflateMax: 1024 * 1024 };

function check(bytes: Buffer, chunk: number) {
  const c = new DicomStreamCheck(LIMITS);
  for (let i = 0; i < bytes.length; i += chunk) c.push(bytes.subarray(i, i + chunk));
  return c.end().instance;
}

type Syntax = { uid: string; explicit: boolean; le: boolean };
const SYNTAXES: Syntax[] = [
  { uid: '1.2.840.10008.1.2.1', explicit: true, le: true },
  { uid: '1.2.840.10008.1.2', explicit: false, le: true },
  { uid: '1.2.840.10008.1.2.2', explicit: true, le: false },
];
const LONG = new Set(['OB', 'OW', 'SQ', 'UN', 'UT']);

/** One element in the given syntax (the file meta is always explicit little endian). */
function element(s: Omit<Syntax, 'uid'>, group: number, elem: number, vr: string, value: Buffer): Buffer {
  // UIDs are padded with NUL, text with a space (PS3.5 §6.2).
  const v = value.length % 2 ? Buffer.concat([value, Buffer.from([vr === 'UI' ? 0 : 0x20])]) : value;
  const long = s.explicit && LONG.has(vr);
  const h = Buffer.alloc(s.explicit ? (long ? 12 : 8) : 8);
  const u16 = (n: number, at: number) => (s.le ? h.writeUInt16LE(n, at) : h.writeUInt16BE(n, at));
  const u32 = (n: number, at: number) => (s.le ? h.writeUInt32LE(n, at) : h.writeUInt32BE(n, at));
  u16(group, 0);
  u16(elem, 2);
  if (!s.explicit) u32(v.length, 4);
  else {
    h.write(vr, 4, 'latin1');
    if (long) u32(v.length, 8);
    else u16(v.length, 6);
  }
  return Buffer.concat([h, v]);
}

/** A small Part 10 file: preamble, DICM, file meta, identifying attributes, pixel data. */
function syntheticDicom(s: Syntax, pixels: number): Buffer {
  const meta = { explicit: true, le: true };
  const ui = (x: Omit<Syntax, 'uid'>, g: number, e: number, uid: string) => element(x, g, e, 'UI', Buffer.from(uid));
  const metaBody = Buffer.concat([
    element(meta, 0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    ui(meta, 0x0002, 0x0002, '1.2.840.10008.5.1.4.1.1.2'),
    ui(meta, 0x0002, 0x0003, '2.25.1'),
    ui(meta, 0x0002, 0x0010, s.uid),
  ]);
  const groupLength = element(meta, 0x0002, 0x0000, 'UL', Buffer.alloc(4));
  groupLength.writeUInt32LE(metaBody.length, 8);
  const data = Buffer.concat([
    ui(s, 0x0008, 0x0016, '1.2.840.10008.5.1.4.1.1.2'),
    ui(s, 0x0008, 0x0018, '2.25.1'),
    element(s, 0x0008, 0x0060, 'CS', Buffer.from('CT')),
    element(s, 0x0010, 0x0020, 'LO', Buffer.from('FUZZ')),
    ui(s, 0x0020, 0x000d, '2.25.2'),
    ui(s, 0x0020, 0x000e, '2.25.3'),
    element(s, 0x0020, 0x0013, 'IS', Buffer.from('1')),
    element(s, 0x7fe0, 0x0010, 'OW', Buffer.alloc(pixels, 7)),
  ]);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), groupLength, metaBody, data]);
}

const synthetic = SYNTAXES.flatMap((s) => [syntheticDicom(s, 64), syntheticDicom(s, 70_000)]);
const deflated = ['deflate/report_dfl', 'deflate/image_dfl'].map((f) => readFileSync(join(DICOM_DIR, f)));
const chunk = fc.constantFrom(1, 7, 512, 4096, 65_536, 1 << 20);

/** A file cut right after an element's header: dicom-parser threw a bare string when the value was read (was a 500). */
function cutAfterHeader(file: Buffer, group: number, elem: number): Buffer {
  const tag = Buffer.alloc(4);
  tag.writeUInt16LE(group, 0);
  tag.writeUInt16LE(elem, 2);
  return file.subarray(0, file.indexOf(Buffer.concat([tag, Buffer.from('UI')])) + 8);
}
const CUT_VALUES: Array<[Buffer, number]> = [
  [cutAfterHeader(synthetic[0]!, 0x0002, 0x0010), 1],
  [cutAfterHeader(synthetic[0]!, 0x0002, 0x0010), 4096],
  [cutAfterHeader(synthetic[3]!, 0x0002, 0x0010), 7],
];

describe('fuzz: DICOM head and stream checks (src/imaging/dicom.ts)', () => {
  it('the valid seeds pass', () => {
    for (const b of [...synthetic, ...deflated]) expect(check(b, 4096).sopInstanceUid).toMatch(/^[0-9.]+$/);
  });

  it('a value cut off after its header is a DICOM_INVALID refusal naming the element', () => {
    for (const [bytes, size] of CUT_VALUES) {
      const err = returnsOr4xx(() => check(bytes, size));
      expect(err).toMatchObject({ code: 'DICOM_INVALID', expression: ['(0002,0010)'] });
    }
  });

  it('raw bytes, with and without the preamble and DICM: an instance or a 4xx GatewayError', () => {
    const withMagic = rawBytes.map((b) => Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), b]));
    fuzz(
      fc.tuple(fc.oneof(rawBytes, withMagic), chunk),
      ([bytes, size]) => void returnsOr4xx(() => check(bytes, size)),
      { numRuns: 1500 },
    );
  });

  it('synthetic files of each transfer syntax with one edit in the meta or data set: an instance or a 4xx', () => {
    fuzz(
      fc.tuple(
        fc.constantFrom(...synthetic).chain((b) => mutatedBytes(b, 400)),
        chunk,
      ),
      ([bytes, size]) => void returnsOr4xx(() => check(bytes, size)),
      { numRuns: 3000, examples: CUT_VALUES },
    );
  });

  it('synthetic files edited anywhere (pixel data, the walk past the head): an instance or a 4xx', () => {
    fuzz(
      fc.tuple(
        fc.constantFrom(...synthetic).chain((b) => mutatedBytes(b)),
        chunk,
      ),
      ([bytes, size]) => void returnsOr4xx(() => check(bytes, size)),
      { numRuns: 800 },
    );
  });

  it('deflated files with one edit: an instance or a 4xx', () => {
    fuzz(
      fc.tuple(
        fc.constantFrom(...deflated).chain((b) => mutatedBytes(b)),
        chunk,
      ),
      ([bytes, size]) => void returnsOr4xx(() => check(bytes, size)),
      { numRuns: 800 },
    );
  });
});

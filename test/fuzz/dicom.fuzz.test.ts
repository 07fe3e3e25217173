import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DicomStreamCheck, type DicomLimits } from '../../src/imaging/dicom.ts';
import { DICOM_DIR } from '../helpers/imaging.ts';
import { mutatedBytes, rawBytes } from './arbitraries.ts';
import { SYNTAXES, syntheticDicom } from './dicom-builder.ts';
import { fuzzAsync, resolvesOr4xx } from './harness.ts';

/** The smallest head the configuration allows, so the streaming walk runs on the rest of larger inputs. */
const LIMITS: DicomLimits = {
  maxBytes: 4 * 1024 * 1024,
  headBytes: 64 * 1024,
  inflateMax: 1024 * 1024,
  inflateConcurrency: 2,
};

async function check(bytes: Buffer, chunk: number) {
  const c = new DicomStreamCheck(LIMITS);
  for (let i = 0; i < bytes.length; i += chunk) c.push(bytes.subarray(i, i + chunk));
  return (await c.end()).instance;
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
  it('the valid seeds pass', async () => {
    for (const b of [...synthetic, ...deflated]) expect((await check(b, 4096)).sopInstanceUid).toMatch(/^[0-9.]+$/);
  });

  it('a value cut off after its header is a DICOM_INVALID refusal naming the element', async () => {
    for (const [bytes, size] of CUT_VALUES) {
      const err = await resolvesOr4xx(() => check(bytes, size));
      expect(err).toMatchObject({ code: 'DICOM_INVALID', expression: ['(0002,0010)'] });
    }
  });

  it('raw bytes, with and without the preamble and DICM: an instance or a 4xx GatewayError', async () => {
    const withMagic = rawBytes.map((b) => Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), b]));
    await fuzzAsync(
      fc.tuple(fc.oneof(rawBytes, withMagic), chunk),
      async ([bytes, size]) => void (await resolvesOr4xx(() => check(bytes, size))),
      { numRuns: 1500 },
    );
  });

  it('synthetic files of each transfer syntax with one edit in the meta or data set: an instance or a 4xx', async () => {
    await fuzzAsync(
      fc.tuple(
        fc.constantFrom(...synthetic).chain((b) => mutatedBytes(b, 400)),
        chunk,
      ),
      async ([bytes, size]) => void (await resolvesOr4xx(() => check(bytes, size))),
      { numRuns: 3000, examples: CUT_VALUES },
    );
  });

  it('synthetic files edited anywhere (pixel data, the walk past the head): an instance or a 4xx', async () => {
    await fuzzAsync(
      fc.tuple(
        fc.constantFrom(...synthetic).chain((b) => mutatedBytes(b)),
        chunk,
      ),
      async ([bytes, size]) => void (await resolvesOr4xx(() => check(bytes, size))),
      { numRuns: 800 },
    );
  });

  it('deflated files with one edit: an instance or a 4xx', async () => {
    await fuzzAsync(
      fc.tuple(
        fc.constantFrom(...deflated).chain((b) => mutatedBytes(b)),
        chunk,
      ),
      async ([bytes, size]) => void (await resolvesOr4xx(() => check(bytes, size))),
      { numRuns: 800 },
    );
  });
});

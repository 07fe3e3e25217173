import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { DicomStreamCheck, type DicomLimits } from '../../src/imaging/dicom.ts';
import { GatewayError } from '../../src/errors.ts';
import { DICOM_DIR as DIR, DICOM_FIXTURES } from '../helpers/imaging.ts';

const BIG: DicomLimits = {
  maxBytes: 4 * 1024 ** 3,
  headBytes: 4 * 1024 * 1024,
  inflateMax: 64 * 1024 * 1024,
  inflateConcurrency: 2,
};
/** A head smaller than most fixtures, so the streaming walk checks the rest. */
const SMALL_HEAD: DicomLimits = { ...BIG, headBytes: 64 * 1024 };

async function run(bytes: Buffer, limits: DicomLimits, chunk = 65_536) {
  const check = new DicomStreamCheck(limits);
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunk) out.push(...check.push(bytes.subarray(i, i + chunk)));
  const { release, instance } = await check.end();
  out.push(...release);
  return { instance, released: Buffer.concat(out) };
}

async function refusal(bytes: Buffer, limits: DicomLimits, chunk = 65_536): Promise<GatewayError> {
  try {
    await run(bytes, limits, chunk);
  } catch (err) {
    if (err instanceof GatewayError) return err;
    throw err;
  }
  throw new Error('accepted');
}

describe('DICOM stream checks', async () => {
  it('accepts every corpus file, releasing its bytes unchanged, with whole-file and streamed-walk heads', async () => {
    expect(DICOM_FIXTURES.length).toBe(23);
    for (const f of DICOM_FIXTURES) {
      const bytes = readFileSync(f);
      for (const [limits, chunk] of [
        [BIG, 65_536],
        [SMALL_HEAD, 4099],
        [SMALL_HEAD, 1],
      ] as const) {
        if (chunk === 1 && bytes.length > 200_000) continue;
        const name = `${relative(DIR, f)} head=${limits.headBytes} chunk=${chunk}`;
        const { instance, released } = await run(bytes, limits, chunk);
        expect(released.equals(bytes), name).toBe(true);
        expect(instance.length).toBe(bytes.length);
        expect(instance.studyInstanceUid, name).toMatch(/^1\.[0-9.]+$/);
        expect(instance.seriesInstanceUid).toMatch(/^1\.[0-9.]+$/);
        expect(instance.sopInstanceUid).toMatch(/^1\.[0-9.]+$/);
        expect(instance.modality).toMatch(/^(CT|US|OT|SR|ECG)$/);
      }
    }
    const ct = (await run(readFileSync(join(DIR, 'CT1_UNC.explicit_big_endian.dcm')), BIG)).instance;
    expect(ct).toMatchObject({
      transferSyntax: '1.2.840.10008.1.2.2',
      modality: 'CT',
      patientId: '1CT1',
      sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    });
  });

  it('refuses every truncated corpus file with a 4xx, whether the cut falls in the head or in the streamed rest', async () => {
    for (const f of DICOM_FIXTURES) {
      const bytes = readFileSync(f);
      // The deflated files carry 8 bytes after the end of their deflate stream (not part of the data set): cut inside the stream.
      const ends = f.includes('deflate') ? [bytes.length - 40] : [bytes.length - 1, bytes.length - 7];
      for (const cut of [...ends, Math.floor(bytes.length * 0.6), 300]) {
        for (const limits of [BIG, SMALL_HEAD]) {
          const err = await refusal(bytes.subarray(0, cut), limits);
          expect(['DICOM_TRUNCATED', 'DICOM_INVALID'], `${relative(DIR, f)} cut at ${cut}`).toContain(err.code);
          expect(err.status).toBe(400);
        }
      }
    }
  });

  it('refuses non-DICOM input', async () => {
    const cases: Array<[string, Buffer]> = [
      ['empty', Buffer.alloc(0)],
      ['JSON', Buffer.from(JSON.stringify({ resourceType: 'Bundle', type: 'collection' }))],
      ['random', randomBytes(100_000)],
      ['PNG', Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), randomBytes(1000)])],
      ['preamble only', Buffer.alloc(132)],
    ];
    for (const [name, bytes] of cases) {
      const err = await refusal(bytes, BIG);
      expect(err.code, name).toBe('DICOM_INVALID');
      expect(err.status).toBe(400);
    }
  });

  it('refuses malformed files: broken meta, a mismatched SOP Instance UID, a bad VR, a stray delimiter', async () => {
    const ct = readFileSync(join(DIR, 'CT1_UNC.explicit_little_endian.dcm'));
    const noMeta = Buffer.concat([ct.subarray(0, 132), randomBytes(2000)]);
    expect((await refusal(noMeta, BIG)).code).toBe('DICOM_INVALID');
    // Renumber (0020,000D) Study Instance UID to (0020,000C): the structure stays valid, the UID is gone.
    const study = ct.indexOf(Buffer.from([0x20, 0x00, 0x0d, 0x00, 0x55, 0x49]), 300);
    const noStudy = Buffer.from(ct);
    noStudy[study + 2] = 0x0c;
    const err = await refusal(noStudy, BIG);
    expect(err.code).toBe('DICOM_INVALID');
    expect(err.expression).toEqual(['(0020,000D)']);
    // A garbage VR after the head (streamed walk).
    const big = readFileSync(join(DIR, 'encapsulated/multi-frame/CT0012.explicit_little_endian.dcm'));
    const pixel = big.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00]));
    const badVr = Buffer.from(big);
    badVr.write('zz', pixel + 4, 'latin1');
    expect((await refusal(badVr, SMALL_HEAD)).code).toBe('DICOM_INVALID');
    // Extra bytes after the last element: a stray header that runs past the end.
    expect(
      (await refusal(Buffer.concat([big, Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0])]), SMALL_HEAD)).code,
    ).toBe('DICOM_INVALID');
    expect((await refusal(Buffer.concat([big, Buffer.from([0x10, 0x00])]), SMALL_HEAD)).code).toBe('DICOM_TRUNCATED');
  });

  it('refuses a file over DICOM_MAX_BYTES (413) and a deflated file that inflates beyond DICOM_INFLATE_MAX (413)', async () => {
    const ct = readFileSync(join(DIR, 'CT1_UNC.explicit_little_endian.dcm'));
    expect((await refusal(ct, { ...BIG, maxBytes: 100_000 })).status).toBe(413);
    const wave = readFileSync(join(DIR, 'deflate/wave_dfl'));
    expect((await run(wave, BIG)).instance.transferSyntax).toBe('1.2.840.10008.1.2.1.99');
    expect((await refusal(wave, { ...BIG, inflateMax: 10_000 })).status).toBe(413);
    // Deflated files must fit in the head.
    expect((await refusal(wave, { ...BIG, headBytes: 4096 }, 1024)).status).toBe(413);
  });
});

import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DicomRecheck } from '../../src/inbound/imaging/recheck.ts';
import { studyContentType } from '../../src/protocol/imaging-manifest.ts';
import { DicomStreamCheck, type DicomInstance } from '../../src/imaging/dicom.ts';
import { Handoff } from '../../src/imaging/handoff.ts';
import { imagingStudy } from '../../src/imaging/imaging-study.ts';
import { checkStudyMatches } from '../../src/imaging/study-match.ts';
import { GatewayError } from '../../src/errors.ts';
import { DICOM_DIR } from '../helpers/imaging.ts';

const CONFIG = {
  dicomMaxBytes: 4 * 1024 ** 3,
  dicomHeadBytes: 64 * 1024,
  dicomInflateMax: 64 * 1024 * 1024,
  dicomInflateConcurrency: 2,
  imagingMaxInstances: 10,
};
const CT = readFileSync(join(DICOM_DIR, 'CT1_UNC.explicit_little_endian.dcm'));
const CT_IMPLICIT = readFileSync(join(DICOM_DIR, 'CT1_UNC.implicit_little_endian.dcm'));
const US = readFileSync(join(DICOM_DIR, 'encapsulated/multi-frame/IM00001.implicit_little_endian.dcm'));
const BOUNDARY = 'dicom-0123456789abcdef';

/** The content JWE's protected header, as openStream hands it to the sink before the first write. */
const header = (cty: string) => ({ alg: 'ECDH-ES', enc: 'A256GCM', cty });

const multipart = (parts: Buffer[], type = 'application/dicom') =>
  Buffer.concat([
    ...parts.flatMap((p) => [Buffer.from(`--${BOUNDARY}\r\nContent-Type: ${type}\r\n\r\n`), p, Buffer.from('\r\n')]),
    Buffer.from(`--${BOUNDARY}--\r\n`),
  ]);

async function recheck(content: Buffer, cty: string, chunk = 4099): Promise<DicomInstance[]> {
  const sink = new DicomRecheck(CONFIG);
  sink.begin(header(cty));
  for (let i = 0; i < content.length; i += chunk) await sink.write(Buffer.from(content.subarray(i, i + chunk)));
  await sink.commit();
  return sink.instances();
}

async function refusal(content: Buffer, cty: string, chunk?: number): Promise<GatewayError> {
  const err = await recheck(content, cty, chunk).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (err instanceof GatewayError) return err;
  throw err ?? new Error('accepted');
}

async function instanceOf(bytes: Buffer): Promise<DicomInstance> {
  const check = new DicomStreamCheck({
    maxBytes: CONFIG.dicomMaxBytes,
    headBytes: CONFIG.dicomHeadBytes,
    inflateMax: CONFIG.dicomInflateMax,
    inflateConcurrency: CONFIG.dicomInflateConcurrency,
  });
  check.push(bytes);
  return (await check.end()).instance;
}

describe("the receiver's DICOM recheck (a PlaintextSink)", () => {
  it('finds the instance of a single file and the instances of a multipart study, in any chunking', async () => {
    expect(await recheck(CT, 'application/dicom')).toEqual([await instanceOf(CT)]);
    const study = multipart([CT, CT_IMPLICIT]);
    for (const chunk of [1 << 20, 4099, 77]) {
      expect(await recheck(study, studyContentType(BOUNDARY), chunk)).toEqual([
        await instanceOf(CT),
        await instanceOf(CT_IMPLICIT),
      ]);
    }
  });

  it("records the intake's refusals and throws them only when asked, naming where in the content", async () => {
    const cases: Array<[string, Buffer, string, string, string]> = [
      ['not DICOM', Buffer.from('{"resourceType":"Bundle"}'), 'application/dicom', 'DICOM_INVALID', 'content'],
      ['truncated', CT.subarray(0, CT.length - 1000), 'application/dicom', 'DICOM_TRUNCATED', 'content'],
      ['empty', Buffer.alloc(0), 'application/dicom', 'DICOM_INVALID', 'content'],
      ['other media type', CT, 'text/plain', 'DICOM_INVALID', 'content'],
      [
        'a text part',
        multipart([CT, Buffer.from('hello')], 'text/plain'),
        studyContentType(BOUNDARY),
        'DICOM_INVALID',
        'content.part[0]',
      ],
      [
        'a truncated part',
        multipart([CT, CT.subarray(0, 5000)]),
        studyContentType(BOUNDARY),
        'DICOM_TRUNCATED',
        'content.part[1]',
      ],
      [
        'a part without DICM',
        multipart([CT, Buffer.alloc(300)]),
        studyContentType(BOUNDARY),
        'DICOM_INVALID',
        'content.part[1]',
      ],
      [
        'no closing boundary',
        multipart([CT]).subarray(0, CT.length + 40),
        studyContentType(BOUNDARY),
        'DICOM_INVALID',
        'content.part[0]',
      ],
      ['another boundary', multipart([CT]), studyContentType('other'), 'DICOM_INVALID', 'content'],
    ];
    for (const [name, content, cty, code, expression] of cases) {
      const err = await refusal(content, cty);
      expect(err.code, `${name}: ${err.message}`).toBe(code);
      expect(err.status, name).toBeLessThan(500);
      expect(err.expression?.[0], name).toBe(expression);
    }
    const tooMany = await refusal(multipart(Array.from({ length: 11 }, () => CT)), studyContentType(BOUNDARY), 1 << 20);
    expect(tooMany.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('checks the content as the media type the header names, not as what it looks like', async () => {
    // A valid single file announced as a study, and a study announced as a single file: both refused.
    expect((await refusal(CT, studyContentType(BOUNDARY))).code).toBe('DICOM_INVALID');
    expect((await refusal(multipart([CT]), 'application/dicom')).code).toBe('DICOM_INVALID');
    const sink = new DicomRecheck(CONFIG); // no header at all: nothing to check it as
    await sink.write(CT);
    await sink.commit();
    expect(() => sink.instances()).toThrow(/media type null is not DICOM/);
  });

  it('discard ends a multipart check that is still waiting for bytes', async () => {
    const sink = new DicomRecheck(CONFIG);
    sink.begin(header(studyContentType(BOUNDARY)));
    await sink.write(multipart([CT]).subarray(0, 1000));
    await sink.discard();
    expect(() => sink.instances()).toThrow();
  });
});

describe('Handoff (push to pull, bounded)', () => {
  it('blocks the producer at capacity and passes chunks by reference, in order', async () => {
    const h = new Handoff(2);
    const a = Buffer.from('a');
    await h.push(a);
    let released = false;
    const second = h.push(Buffer.from('b')).then(() => (released = true));
    await new Promise((r) => setImmediate(r));
    expect(released).toBe(false);
    const it = h[Symbol.asyncIterator]();
    expect((await it.next()).value).toBe(a);
    await second;
    expect(released).toBe(true);
    h.end();
    expect((await it.next()).value.toString()).toBe('b');
    expect((await it.next()).done).toBe(true);
  });

  it('after close, pushes return at once and the consumer ends', async () => {
    const h = new Handoff(1);
    const blocked = h.push(Buffer.from('x'));
    h.close();
    await blocked;
    await h.push(Buffer.from('y'));
    expect((await h[Symbol.asyncIterator]().next()).done).toBe(true);
  });
});

const [ct, us] = [await instanceOf(CT), await instanceOf(US)];

describe('checkStudyMatches', () => {
  it('accepts the ImagingStudy the sender builds, also after a JSON round trip and with extra fields', () => {
    expect(() => checkStudyMatches([ct], JSON.parse(JSON.stringify(imagingStudy([ct]))))).not.toThrow();
    expect(() => checkStudyMatches([ct], { ...imagingStudy([ct]), description: 'x', started: '2020' })).not.toThrow();
  });

  it('refuses another study, instance, series, modality, subject or count with IMAGING_STUDY_MISMATCH at the first difference', () => {
    const base = imagingStudy([ct]) as {
      series: Array<Record<string, unknown> & { instance: Array<Record<string, unknown>> }>;
    } & Record<string, unknown>;
    const edit = (f: (s: typeof base) => void) => {
      const s = structuredClone(base);
      f(s);
      return s;
    };
    const cases: Array<[Record<string, unknown>, string]> = [
      [imagingStudy([us]), 'content.imagingStudy.identifier[0].value'],
      [edit((s) => (s.series[0]!.instance[0]!.uid = '1.2.3')), 'content.imagingStudy.series[0].instance[0].uid'],
      [edit((s) => (s.series[0]!.uid = '1.2.3')), 'content.imagingStudy.series[0].uid'],
      [edit((s) => (s.series[0]!.modality = { code: 'MR' })), 'content.imagingStudy.series[0].modality.code'],
      [
        edit((s) => (s.subject = { identifier: { value: 'someone else' } })),
        'content.imagingStudy.subject.identifier.value',
      ],
      [edit((s) => (s.numberOfInstances = 2)), 'content.imagingStudy.numberOfInstances'],
      [edit((s) => s.series[0]!.instance.push({ uid: '1.2.3' })), 'content.imagingStudy.series[0].instance'],
      [edit((s) => (s.series = 'none' as never)), 'content.imagingStudy.series'],
      [{ resourceType: 'ImagingStudy' }, 'content.imagingStudy.identifier[0].value'],
    ];
    for (const [signed, path] of cases) {
      let err: unknown;
      try {
        checkStudyMatches([ct], signed);
      } catch (e) {
        err = e;
      }
      expect(err, path).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).code).toBe('IMAGING_STUDY_MISMATCH');
      expect((err as GatewayError).status).toBe(422);
      expect((err as GatewayError).expression).toEqual([path]);
    }
  });

  it('refuses content a gateway would not send (two studies) as DICOM_INVALID', () => {
    expect(() => checkStudyMatches([ct, us], imagingStudy([ct]))).toThrow(
      expect.objectContaining({ code: 'DICOM_INVALID' }),
    );
  });
});

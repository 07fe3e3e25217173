import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import request from 'supertest';
import { startTwoGateways, type TwoGateways } from '../helpers/two-gateways.ts';
import { DICOM_DIR, filesUnder } from '../helpers/imaging.ts';
import { signAnnouncement } from '../../src/protocol/imaging-announcement.ts';
import { IMAGING, studyContentType, type ManifestContent } from '../../src/protocol/imaging-manifest.ts';
import { claimsPayload, PROTOCOL } from '../../src/protocol/wire.ts';
import { DicomStreamCheck, type DicomInstance } from '../../src/imaging/dicom.ts';
import { imagingStudy } from '../../src/imaging/imaging-study.ts';
import { signCompact } from '../../src/jose/jws.ts';
import { sealCompact } from '../../src/jose/seal.ts';
import { sealStreamToFile } from '../../src/jose/stream-seal.ts';

/**
 * The receiver re-runs the intake's DICOM checks on what it deciphers and
 * holds the signed ImagingStudy against it. The deliveries here are crafted
 * by hand with A's real HSM signing key and B's real encryption key: a valid
 * signature and a matching SHA-256 over content that A's intake would never
 * have accepted, or with an ImagingStudy that does not describe it.
 */
const CT = readFileSync(join(DICOM_DIR, 'CT1_UNC.explicit_little_endian.dcm'));
const CT_IMPLICIT = readFileSync(join(DICOM_DIR, 'CT1_UNC.implicit_little_endian.dcm'));
const US = readFileSync(join(DICOM_DIR, 'encapsulated/multi-frame/IM00001.implicit_little_endian.dcm'));
const BOUNDARY = 'dicom-feedfacefeedface';

const part = (b: string, body: string | Buffer) =>
  Buffer.concat([
    Buffer.from(`--${b}\r\nContent-Type: application/jose\r\n\r\n`),
    Buffer.from(body),
    Buffer.from('\r\n'),
  ]);
const study = (parts: Buffer[]) =>
  Buffer.concat([
    ...parts.flatMap((p) => [
      Buffer.from(`--${BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n`),
      p,
      Buffer.from('\r\n'),
    ]),
    Buffer.from(`--${BOUNDARY}--\r\n`),
  ]);

async function instanceOf(bytes: Buffer): Promise<DicomInstance> {
  const check = new DicomStreamCheck({
    maxBytes: 1 << 30,
    headBytes: 1 << 22,
    inflateMax: 1 << 26,
    inflateConcurrency: 2,
  });
  check.push(bytes);
  return (await check.end()).instance;
}

describe('POST /inbox/imaging: the receiver rechecks the DICOM content against the signed manifest', () => {
  let t: TwoGateways;
  let n = 0;
  beforeAll(async () => {
    // Protocol v1 deliveries crafted by hand (v2 imaging: imaging-pq-e2e.int.test.ts).
    t = await startTwoGateways({ IMAGING_CUT_THROUGH: 'off', PROTOCOL_V2: 'off' });
  }, 60_000);
  afterAll(async () => t?.close());

  /** A delivery from A to B that A's intake would not produce: `content` sealed as `cty`, with a signed manifest over its real digest and `imagingStudy`. */
  async function craft(
    content: Buffer,
    cty: string,
    study: Record<string, unknown>,
  ): Promise<{ body: Buffer; jti: string }> {
    const a = t.a.gw.app.ctx;
    const signer = (await a.keyring.fresh()).signer('sig');
    const jwks = (await (await fetch(`${t.b.gw.url}/.well-known/jwks.json`)).json()) as {
      keys: Array<Record<string, string> & { kid: string }>;
    };
    const bEnc = jwks.keys.find((k) => k.use === 'enc')!;
    const iss = t.a.gw.config.org;
    const aud = t.b.gw.config.org;
    const jti = randomUUID();
    const exchange = randomUUID();
    const iat = Math.floor(Date.now() / 1000);
    const announcement = await signAnnouncement(signer, { iss, aud, iat, jti, exchange });
    const jwePath = join(t.b.gw.config.dataDir, `crafted-${++n}.jwe`);
    await sealStreamToFile(Readable.from([content]), bEnc as never, cty, jwePath);
    const manifest: ManifestContent = {
      sha256: createHash('sha256').update(content).digest('base64url'),
      length: content.length,
      imagingStudy: study,
    };
    const payload = claimsPayload({ iss, aud, iat, jti, exchange, content_type: cty }, JSON.stringify(manifest));
    const envelope = sealCompact(await signCompact(signer, payload, { typ: PROTOCOL.contentTyp }), bEnc as never);
    const b = 'crafted';
    return {
      body: Buffer.concat([
        part(b, announcement),
        part(b, readFileSync(jwePath)),
        part(b, envelope),
        Buffer.from(`--${b}--\r\n`),
      ]),
      jti,
    };
  }

  const post = (body: Buffer) =>
    request(t.b.gw.app.server)
      .post('/inbox/imaging')
      .set('content-type', 'multipart/related; type="application/jose"; boundary=crafted')
      .send(body);
  const inboxCount = async () =>
    Number((await t.b.gw.app.ctx.pool.query('SELECT count(*) FROM inbox_messages')).rows[0].count);
  const inboxFiles = () => filesUnder(join(t.b.gw.config.dataDir, 'imaging', 'inbox'));

  it(
    'refuses non-DICOM content, DICOM that fails the checks, and DICOM the ImagingStudy does not describe; nothing is stored, each refusal is audited',
    { timeout: 120_000 },
    async () => {
      const ct = await instanceOf(CT);
      const ctStudy = imagingStudy([ct]);
      const otherSop = structuredClone(ctStudy) as { series: Array<{ instance: Array<{ uid: string }> }> };
      otherSop.series[0]!.instance[0]!.uid = '2.25.1234';
      const multi = studyContentType(BOUNDARY);
      const cases: Array<[string, Buffer, string, Record<string, unknown>, number, string, string]> = [
        [
          'a FHIR bundle under a valid manifest',
          Buffer.from('{"resourceType":"Bundle","type":"collection"}'),
          IMAGING.dicom,
          ctStudy,
          400,
          'DICOM_INVALID',
          'content',
        ],
        [
          'truncated DICOM',
          CT.subarray(0, CT.length - 1000),
          IMAGING.dicom,
          ctStudy,
          400,
          'DICOM_TRUNCATED',
          'content',
        ],
        [
          'a study with a text part',
          Buffer.concat([
            study([CT]).subarray(0, -(BOUNDARY.length + 6)),
            Buffer.from(`--${BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--${BOUNDARY}--\r\n`),
          ]),
          multi,
          ctStudy,
          400,
          'DICOM_INVALID',
          'content.part[1]',
        ],
        [
          'the manifest of another study',
          CT,
          IMAGING.dicom,
          imagingStudy([await instanceOf(US)]),
          422,
          'IMAGING_STUDY_MISMATCH',
          'content.imagingStudy.identifier[0].value',
        ],
        [
          'another SOP Instance UID',
          CT,
          IMAGING.dicom,
          otherSop,
          422,
          'IMAGING_STUDY_MISMATCH',
          'content.imagingStudy.series[0].instance[0].uid',
        ],
        [
          'one instance fewer in the manifest',
          study([CT, CT_IMPLICIT]),
          multi,
          ctStudy,
          422,
          'IMAGING_STUDY_MISMATCH',
          'content.imagingStudy.numberOfInstances',
        ],
      ];
      const auditBefore = Number(
        (await t.b.gw.app.ctx.pool.query("SELECT count(*) FROM audit_log WHERE type = 'inbox.refused'")).rows[0].count,
      );
      for (const [name, content, cty, signed, status, code, expression] of cases) {
        const { body } = await craft(content, cty, signed);
        const res = await post(body);
        expect(res.status, `${name}: ${res.text.slice(0, 300)}`).toBe(status);
        expect(res.body.resourceType, name).toBe('OperationOutcome');
        expect(res.body.issue[0].details.coding[0].code, name).toBe(code);
        expect(res.body.issue[0].expression, name).toEqual([expression]);
      }
      expect(await inboxCount()).toBe(0);
      expect(inboxFiles()).toEqual([]);
      const { rows } = await t.b.gw.app.ctx.pool.query<{ reason: string; agent: string }>(
        "SELECT entry::jsonb->'detail'->>'reason' AS reason, entry::jsonb->'agent'->>'id' AS agent FROM audit_log WHERE type = 'inbox.refused' ORDER BY idx",
      );
      const refused = rows.slice(auditBefore);
      expect(refused.map((r) => r.reason)).toEqual(cases.map((c) => c[5]));
      expect(refused.every((r) => r.agent === t.a.gw.config.org)).toBe(true);
    },
  );

  it(
    'accepts a crafted delivery whose content is what its manifest says (single file and multipart study), and the EHR gets the bytes',
    { timeout: 60_000 },
    async () => {
      const single = await craft(CT, IMAGING.dicom, imagingStudy([await instanceOf(CT)]));
      const ok = await post(single.body);
      expect(ok.status, ok.text.slice(0, 300)).toBe(200);
      const both = study([CT, CT_IMPLICIT]);
      const multi = await craft(
        both,
        studyContentType(BOUNDARY),
        imagingStudy([await instanceOf(CT), await instanceOf(CT_IMPLICIT)]),
      );
      expect((await post(multi.body)).status).toBe(200);
      expect(await inboxCount()).toBe(2);
      expect(inboxFiles().filter((f) => f.endsWith('.jwe'))).toHaveLength(2);
      const auth = await t.b.ehr.bearer();
      const list = await request(t.b.gw.app.server)
        .get('/inbox/messages?_count=100')
        .set('authorization', auth)
        .expect(200);
      const meta = list.body.messages.find((m: { delivery: string }) => m.delivery === multi.jti);
      const res = await request(t.b.gw.app.server)
        .get(`/inbox/messages/${meta.id}/content`)
        .set('authorization', auth)
        .buffer(true)
        .parse((r, cb) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => cb(null, Buffer.concat(chunks)));
        });
      expect(res.status).toBe(200);
      expect((res.body as Buffer).equals(both)).toBe(true);
    },
  );
});

import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { messageBundle, startOutbound, type Outbound } from '../helpers/outbound.ts';
import { hostileJsonValue, hostileString, mutatedBytes, mutatedJson, mutatedText, rawBytes } from './arbitraries.ts';
import { SYNTAXES, syntheticDicom } from './dicom-builder.ts';
import { fuzzAsync } from './harness.ts';
import { auditCount, expectReady, headerSafe, queryString, send, type Answer } from './http.ts';

const FHIR = 'application/fhir+json';
const contentType = fc.oneof(
  { weight: 6, arbitrary: fc.constant(FHIR) },
  { weight: 1, arbitrary: fc.constantFrom(`${FHIR}; charset=utf-8`, 'application/json', 'text/plain', '') },
  { weight: 1, arbitrary: hostileString.map(headerSafe) },
);

/**
 * The outbound intake under hostile bodies, over HTTP (in process): every
 * answer is a 202 or a 4xx OperationOutcome, every 4xx is audited as
 * intake.refused, and the gateway stays ready.
 */
describe('fuzz over HTTP: POST /fhir/$process-message, POST /exchanges, POST /imaging', () => {
  let o: Outbound;
  let recipient: string;
  let refusals = 0;
  beforeAll(async () => {
    o = await startOutbound({ RATE_LIMIT: '0', IMAGING_CUT_THROUGH: 'off' }, 1, { worker: false });
    recipient = o.recipients[0]!.id;
  });
  afterAll(async () => o?.close());
  afterEach(async () => expectReady(o.gw.app));

  /** The property of one answer; a 4xx is counted, to be matched with the audit trail. */
  function judge(res: Answer, what: string) {
    expect(res.statusCode, `${what}: HTTP ${res.statusCode} ${res.body.slice(0, 300)}`).toBeLessThan(500);
    if (res.statusCode >= 400) {
      refusals++;
      expect(JSON.parse(res.body).resourceType, what).toBe('OperationOutcome');
    } else expect(res.statusCode, what).toBe(202);
  }

  async function expectRefusalsAudited(run: () => Promise<void>) {
    refusals = 0;
    const before = await auditCount(o.gw.app, 'intake.refused');
    await run();
    expect(await auditCount(o.gw.app, 'intake.refused')).toBe(before + refusals);
  }

  const post = (url: string, type: string, payload: Buffer | string) =>
    send(o.gw.app, {
      method: 'POST',
      url,
      headers: { authorization: o.ehrAuth, ...(type ? { 'content-type': type } : {}) },
      payload,
    });

  it('$process-message: raw bytes, JSON of any shape, mutated message Bundles', async () => {
    const message = JSON.parse(messageBundle([recipient], 0));
    const body = fc.oneof(
      rawBytes,
      hostileJsonValue.map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
      mutatedJson(message).map((b) => Buffer.from(JSON.stringify(b))),
      mutatedText(JSON.stringify(message)).map((t) => Buffer.from(t)),
    );
    await expectRefusalsAudited(() =>
      fuzzAsync(
        fc.tuple(body, contentType),
        async ([payload, type]) => judge(await post('/fhir/$process-message', type, payload), 'process-message'),
        { numRuns: 200 },
      ),
    );
  });

  it('/exchanges: mutated collection Bundles to valid, hostile and repeated recipients', async () => {
    const collection = { resourceType: 'Bundle', type: 'collection', entry: JSON.parse(messageBundle([], 0)).entry };
    const recipients = fc.array(fc.oneof(fc.constant(recipient), hostileString), { maxLength: 3 });
    await expectRefusalsAudited(() =>
      fuzzAsync(
        fc.tuple(mutatedJson(collection), recipients, contentType),
        async ([bundle, ids, type]) => {
          const url = `/exchanges${queryString(ids.map((id) => ['recipient', id]))}`;
          judge(await post(url, type, JSON.stringify(bundle)), `exchanges ${url}`);
        },
        { numRuns: 150 },
      ),
    );
  });

  it('a NUL in a recipient id (query or MessageHeader receiver) is a 4xx, not a PostgreSQL error', async () => {
    const collection = JSON.stringify({ resourceType: 'Bundle', type: 'collection', entry: [] });
    await expectRefusalsAudited(async () => {
      judge(await post(`/exchanges${queryString([['recipient', '\0']])}`, FHIR, collection), 'recipient=%00');
      judge(await post('/fhir/$process-message', FHIR, messageBundle(['\0'], 0)), 'receiver identifier NUL');
    });
  });

  it('/imaging: single files and multipart/related studies with one edit, and hostile content types', async () => {
    const B = 'fuzz-boundary';
    const dicom = SYNTAXES.map((s) => syntheticDicom(s, 256));
    const study = (files: Buffer[]) =>
      Buffer.concat([
        ...files.flatMap((f) => [
          Buffer.from(`--${B}\r\nContent-Type: application/dicom\r\n\r\n`),
          f,
          Buffer.from('\r\n'),
        ]),
        Buffer.from(`--${B}--\r\n`),
      ]);
    const multipart = `multipart/related; type="application/dicom"; boundary=${B}`;
    const upload = fc.oneof(
      fc.tuple(
        fc.constantFrom(...dicom).chain((d) => mutatedBytes(d, 400)),
        fc.constant('application/dicom'),
      ),
      fc.tuple(
        fc.subarray(dicom, { minLength: 1 }).chain((files) => mutatedBytes(study(files))),
        fc.constant(multipart),
      ),
      fc.tuple(
        rawBytes,
        fc.oneof(fc.constantFrom('application/dicom', multipart, 'multipart/related'), hostileString.map(headerSafe)),
      ),
    );
    await expectRefusalsAudited(() =>
      fuzzAsync(
        fc.tuple(upload, fc.constantFrom([recipient], [], [recipient, recipient])),
        async ([[payload, type], ids]) => {
          const url = `/imaging${queryString(ids.map((id) => ['recipient', id]))}`;
          judge(await post(url, type, payload), `imaging ${type}`);
        },
        { numRuns: 150 },
      ),
    );
  });
});

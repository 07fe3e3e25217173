import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join, relative } from 'node:path';
import request from 'supertest';
import { importJWK, type JWK } from 'jose';
import { startTwoGateways, type TwoGateways } from '../helpers/two-gateways.ts';
import { waitFor } from '../helpers/outbound.ts';
import { verifyReceipt } from '../../src/protocol/receipt.ts';
import { multipartParts, parseMediaType, boundaryOf } from '../../src/imaging/multipart.ts';
import { DICOM_DIR, DICOM_FIXTURES, filesUnder, once } from '../helpers/imaging.ts';
import { imagingDelivered, pullImaging, submitImaging } from '../helpers/imaging-exchange.ts';

/**
 * Imaging between two gateways: A's EHR posts DICOM; A checks it as it
 * streams, seals it per recipient to a file, signs a manifest; A's worker
 * streams the delivery; B verifies tag, digest and length before storing
 * (still sealed) and receipting; B's EHR pulls the exact bytes.
 */
const DIR = DICOM_DIR;

describe('imaging: DICOM from A to B, byte for byte', () => {
  let t: TwoGateways;
  beforeAll(async () => {
    t = await startTwoGateways();
  }, 60_000);
  afterAll(async () => t?.close());

  const send = (body: Buffer, type: string) => submitImaging(t.a, t.b, body, type);
  const delivered = (location: string) => imagingDelivered(t.a, location);
  const pull = (delivery: string) => pullImaging(t.b, delivery);

  it(
    "every corpus DICOM file round-trips A → B byte for byte, each confirmed by B's verified receipt",
    { timeout: 300_000 },
    async () => {
      const { a, b } = t;
      const bJwks = (await (await fetch(`${b.gw.url}/.well-known/jwks.json`)).json()) as {
        keys: Array<JWK & { kid: string }>;
      };
      const sent = new Map<string, Buffer>();
      for (const f of DICOM_FIXTURES) sent.set(await send(readFileSync(f), 'application/dicom'), readFileSync(f));
      for (const [location, bytes] of sent) {
        const r = await delivered(location);
        const claims = await verifyReceipt(
          r.receipt!,
          async (h) =>
            importJWK(
              bJwks.keys.find((k) => k.kid === h.kid)!,
              h.alg,
            ),
          {
            iss: b.gw.config.org,
            aud: a.gw.config.org,
            delivery: r.delivery,
            digest: r.manifest_digest,
          },
        );
        expect((claims as unknown as { content_digest: string }).content_digest).toBe(r.content_digest);
        const got = await pull(r.delivery);
        expect(got.type).toBe('application/dicom');
        expect(got.body.equals(bytes), `${location}`).toBe(true);
        // The manifest is the message itself: signed, with the digest and an ImagingStudy.
        const manifest = await request(b.gw.app.server)
          .get(`/inbox/messages/${got.meta.id}`)
          .set('authorization', await b.ehr.bearer())
          .expect(200);
        const m = JSON.parse(manifest.text) as {
          length: number;
          imagingStudy: { resourceType: string; numberOfInstances: number };
        };
        expect(m.length).toBe(bytes.length);
        expect(m.imagingStudy).toMatchObject({ resourceType: 'ImagingStudy', numberOfInstances: 1 });
      }
      // Delivered content files are removed on A; B keeps only sealed JWEs; no temporary files remain; no UID in any row.
      const aFiles = filesUnder(join(a.gw.config.dataDir, 'imaging'));
      const bFiles = filesUnder(join(b.gw.config.dataDir, 'imaging'));
      expect(aFiles).toEqual([]);
      expect(bFiles.length).toBe(DICOM_FIXTURES.length);
      const studyUid = '1.3.6.1.4.1.5962.1.2';
      for (const f of bFiles) {
        expect(relative(b.gw.config.dataDir, f)).toMatch(/^imaging\/inbox\/[0-9a-f-]{36}\.jwe$/);
        const text = readFileSync(f, 'latin1');
        expect(text.split('.')).toHaveLength(5);
        expect(text).not.toContain(studyUid);
      }
      for (const gw of [a.gw, b.gw]) {
        const dump = await gw.app.ctx.pool
          .query(`SELECT (SELECT coalesce(json_agg(x)::text, '') FROM imaging_exchanges x) || (SELECT coalesce(json_agg(d)::text, '') FROM imaging_deliveries d)
        || (SELECT coalesce(json_agg(c)::text, '') FROM imaging_inbox_content c) || (SELECT coalesce(json_agg(l)::text, '') FROM audit_log l) AS t`);
        expect(dump.rows[0].t).not.toContain(studyUid);
        // A Patient ID of the corpus, as a whole token: v2's ML-DSA signatures are long base64url runs it may sit in by chance.
        expect(dump.rows[0].t).not.toMatch(/(?<![A-Za-z0-9_-])1CT1(?![A-Za-z0-9_-])/);
      }
    },
  );

  it(
    'a STOW-RS multipart/related study of several instances arrives as one canonical multipart body',
    { timeout: 120_000 },
    async () => {
      const names = [
        'CT1_UNC.explicit_little_endian.dcm',
        'CT1_UNC.implicit_little_endian.dcm',
        'CT1_UNC.explicit_big_endian.dcm',
      ];
      const parts = names.map((n) => readFileSync(join(DIR, n)));
      const boundary = 'stow-test-boundary';
      const body = Buffer.concat([
        ...parts.flatMap((p) => [
          Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`),
          p,
          Buffer.from('\r\n'),
        ]),
        Buffer.from(`--${boundary}--\r\n`),
      ]);
      const r = await delivered(await send(body, `multipart/related; type="application/dicom"; boundary=${boundary}`));
      const got = await pull(r.delivery);
      const media = parseMediaType(got.type)!;
      expect(media.type).toBe('multipart/related');
      expect(media.params.type).toBe('application/dicom');
      const received: Buffer[] = [];
      for await (const p of multipartParts(once(got.body), boundaryOf(media), { maxParts: 10 })) {
        expect(p.headers['content-type']).toBe('application/dicom');
        const chunks: Buffer[] = [];
        for await (const c of p.body) chunks.push(Buffer.from(c));
        received.push(Buffer.concat(chunks));
      }
      expect(received.map((x) => x.toString('base64'))).toEqual(parts.map((x) => x.toString('base64')));
    },
  );

  it(
    'an upload interrupted by the EHR leaves no row and no file on A, and nothing on B',
    { timeout: 60_000 },
    async () => {
      const { a, b } = t;
      const ct = readFileSync(join(DIR, 'encapsulated/multi-frame/IM00001.implicit_little_endian.dcm'));
      const before = (await a.gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM imaging_exchanges')).rows[0].n;
      const token = await a.ehr.token();
      await new Promise<void>((resolve) => {
        const req = httpRequest(`${a.gw.url}/imaging?recipient=${encodeURIComponent(b.gw.config.org)}`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/dicom',
            'content-length': String(ct.length),
          },
        });
        req.on('error', () => resolve());
        req.write(ct.subarray(0, 1_000_000), () => setTimeout(() => req.destroy(), 300));
      });
      const partial = (side: TwoGateways['a']) =>
        filesUnder(join(side.gw.config.dataDir, 'imaging')).filter((f) => f.includes('.part-'));
      await waitFor(
        'no partial files on A and B',
        async () => (partial(a).length + partial(b).length === 0 ? true : undefined),
        5_000,
      );
      expect((await a.gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM imaging_exchanges')).rows[0].n).toBe(
        before,
      );
    },
  );

  it(
    'Idempotency-Key: a repeated submission is the first exchange; the same key with other content is refused',
    { timeout: 60_000 },
    async () => {
      const { a, b } = t;
      const post = async (body: Buffer) =>
        request(a.gw.app.server)
          .post(`/imaging?recipient=${encodeURIComponent(b.gw.config.org)}`)
          .set('authorization', await a.ehr.bearer())
          .set('content-type', 'application/dicom')
          .set('idempotency-key', 'imaging-key-1')
          .send(body);
      const ct = readFileSync(join(DIR, 'CT1_UNC.explicit_little_endian.dcm'));
      const first = await post(ct);
      expect(first.status).toBe(202);
      const again = await post(ct);
      expect(again.status).toBe(202);
      expect(again.headers['content-location']).toBe(first.headers['content-location']);
      const other = await post(readFileSync(join(DIR, 'CT1_UNC.implicit_little_endian.dcm')));
      expect(other.status).toBe(422);
      const { rows } = await a.gw.app.ctx.pool.query(
        "SELECT count(*)::int AS n FROM imaging_exchanges WHERE idempotency_key = 'imaging-key-1'",
      );
      expect(rows[0].n).toBe(1);
    },
  );

  it(
    'malformed, truncated and non-DICOM uploads get a 4xx OperationOutcome and leave no row and no file',
    { timeout: 120_000 },
    async () => {
      const { a, b } = t;
      const ct = readFileSync(join(DIR, 'CT1_UNC.explicit_little_endian.dcm'));
      const cases: Array<[string, Buffer, string, number, string]> = [
        ['truncated', ct.subarray(0, ct.length - 1000), 'application/dicom', 400, 'DICOM_TRUNCATED'],
        ['non-DICOM', Buffer.from('{"resourceType":"Bundle"}'), 'application/dicom', 400, 'DICOM_INVALID'],
        ['no DICM', Buffer.concat([Buffer.alloc(132), ct.subarray(132)]), 'application/dicom', 400, 'DICOM_INVALID'],
        ['empty', Buffer.alloc(0), 'application/dicom', 400, 'DICOM_INVALID'],
        ['wrong type', ct, 'application/octet-stream', 415, 'UNSUPPORTED_MEDIA_TYPE'],
        ['multipart without boundary', ct, 'multipart/related; type="application/dicom"', 400, 'BAD_REQUEST'],
        [
          'multipart with a non-DICOM part',
          Buffer.from('--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--\r\n'),
          'multipart/related; type="application/dicom"; boundary=x',
          415,
          'UNSUPPORTED_MEDIA_TYPE',
        ],
        [
          'multipart with a truncated part',
          Buffer.concat([
            Buffer.from('--x\r\nContent-Type: application/dicom\r\n\r\n'),
            ct.subarray(0, 5000),
            Buffer.from('\r\n--x--\r\n'),
          ]),
          'multipart/related; type="application/dicom"; boundary=x',
          400,
          'DICOM_TRUNCATED',
        ],
      ];
      const auth = await a.ehr.bearer();
      const before = await a.gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM imaging_exchanges');
      for (const [name, body, type, status, code] of cases) {
        const res = await request(a.gw.app.server)
          .post(`/imaging?recipient=${encodeURIComponent(b.gw.config.org)}`)
          .set('authorization', auth)
          .set('content-type', type)
          .send(body);
        expect(res.status, `${name}: ${res.text.slice(0, 200)}`).toBe(status);
        expect(res.body.resourceType).toBe('OperationOutcome');
        expect(res.body.issue[0].details.coding[0].code, name).toBe(code);
      }
      const unknown = await request(a.gw.app.server)
        .post('/imaging?recipient=nobody')
        .set('authorization', auth)
        .set('content-type', 'application/dicom')
        .send(ct);
      expect(unknown.status).toBe(422);
      const anonymous = await request(a.gw.app.server)
        .post(`/imaging?recipient=${encodeURIComponent(b.gw.config.org)}`)
        .set('content-type', 'application/dicom')
        .send(ct);
      expect(anonymous.status).toBe(401);
      const after = await a.gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM imaging_exchanges');
      expect(after.rows[0].n).toBe(before.rows[0].n);
      expect(
        filesUnder(join(a.gw.config.dataDir, 'imaging')).filter((f) => !f.endsWith('.jwe') || f.includes('.part-')),
      ).toEqual([]);
      // Refusals that came after the content had begun streaming live to B: B dropped its partial copies.
      await waitFor(
        'no partial files on B',
        async () =>
          filesUnder(join(b.gw.config.dataDir, 'imaging')).some((f) => f.includes('.part-')) ? undefined : true,
        5_000,
      );
      // Every file B keeps has its row (a delivery still being stored by B gets a moment to commit).
      await waitFor(
        "B's inbox files match its rows",
        async () => {
          const stored = await b.gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM imaging_inbox_content');
          return filesUnder(join(b.gw.config.dataDir, 'imaging', 'inbox')).length === stored.rows[0].n
            ? true
            : undefined;
        },
        5_000,
      );
    },
  );
});

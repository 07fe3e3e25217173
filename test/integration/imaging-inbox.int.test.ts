import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import request from 'supertest';
import { startTwoGateways, type TwoGateways } from '../helpers/two-gateways.ts';
import { waitFor } from '../helpers/outbound.ts';
import { DICOM_DIR, filesUnder } from '../helpers/imaging.ts';
import { sealStreamToFile } from '../../src/jose/stream-seal.ts';
import { startWorker } from '../../src/worker/runner.ts';

/**
 * The receiving side of imaging deliveries (POST /inbox/imaging), driven
 * with parts taken from A's own stored deliveries (A's worker is stopped),
 * and the sender's retry path when a transmission fails.
 */
const CT = readFileSync(join(DICOM_DIR, 'CT1_UNC.explicit_little_endian.dcm'));
const US = readFileSync(join(DICOM_DIR, 'encapsulated/multi-frame/IM00001.implicit_little_endian.dcm'));

interface Stored {
  id: string;
  announcement: string;
  manifest_envelope: string;
  content_path: string;
}

const part = (b: string, body: string | Buffer) =>
  Buffer.concat([
    Buffer.from(`--${b}\r\nContent-Type: application/jose\r\n\r\n`),
    Buffer.from(body),
    Buffer.from('\r\n'),
  ]);
const delivery = (announcement: string, content: Buffer, manifest: string, b = 'bnd') =>
  Buffer.concat([part(b, announcement), part(b, content), part(b, manifest), Buffer.from(`--${b}--\r\n`)]);

describe('POST /inbox/imaging', () => {
  let t: TwoGateways;
  let first: Stored;
  let second: Stored;
  let tmp: string;
  beforeAll(async () => {
    // Protocol v1 parts built by hand (v2 imaging: imaging-pq-e2e.int.test.ts).
    t = await startTwoGateways({ IMAGING_CUT_THROUGH: 'off', PROTOCOL_V2: 'off' });
    await t.a.worker!.stop();
    t.a.worker = undefined;
    const submit = async (body: Buffer) => {
      const res = await request(t.a.gw.app.server)
        .post(`/imaging?recipient=${encodeURIComponent(t.b.gw.config.org)}`)
        .set('authorization', await t.a.ehr.bearer())
        .set('content-type', 'application/dicom')
        .send(body);
      expect(res.status).toBe(202);
      const id = (res.headers['content-location'] as string).split('/').pop();
      const { rows } = await t.a.gw.app.ctx.pool.query<Stored>(
        'SELECT id, announcement, manifest_envelope, content_path FROM imaging_deliveries WHERE exchange_id = $1',
        [id],
      );
      return rows[0]!;
    };
    first = await submit(CT);
    second = await submit(US);
    tmp = t.b.gw.config.dataDir;
  }, 60_000);
  afterAll(async () => t?.close());

  const post = (body: Buffer, type = 'multipart/related; type="application/jose"; boundary=bnd') =>
    request(t.b.gw.app.server).post('/inbox/imaging').set('content-type', type).send(body);
  const inboxCount = async () =>
    Number((await t.b.gw.app.ctx.pool.query('SELECT count(*) FROM inbox_messages')).rows[0].count);
  const bFiles = () => filesUnder(join(tmp, 'imaging', 'inbox'));

  it('refuses content that is not what the signed manifest says, a bad tag, a mixed-up manifest, a cut-short body; stores nothing', async () => {
    const jwks = (await (await fetch(`${t.b.gw.url}/.well-known/jwks.json`)).json()) as {
      keys: Array<Record<string, string> & { kid: string }>;
    };
    const bEnc = jwks.keys.find((k) => k.use === 'enc')!;
    // Other bytes, properly sealed to B: the tag verifies, the digest does not.
    const other = join(tmp, 'other.jwe');
    await sealStreamToFile(Readable.from([US]), bEnc as never, 'application/dicom', other);
    const good = readFileSync(first.content_path);
    const text = good.toString('latin1');
    const at = text.lastIndexOf('.') - 100;
    const tampered = Buffer.from(text.slice(0, at) + (text[at] === 'A' ? 'B' : 'A') + text.slice(at + 1), 'latin1');
    const cases: Array<[string, Buffer, number, string]> = [
      [
        'digest mismatch',
        delivery(first.announcement, readFileSync(other), first.manifest_envelope),
        400,
        'CONTENT_DIGEST_MISMATCH',
      ],
      [
        'tampered ciphertext',
        delivery(first.announcement, tampered, first.manifest_envelope),
        400,
        'JWE_DECRYPT_FAILED',
      ],
      [
        'manifest of another delivery',
        delivery(first.announcement, good, second.manifest_envelope),
        400,
        'CLAIMS_INVALID',
      ],
      [
        'no closing boundary',
        delivery(first.announcement, good, first.manifest_envelope).subarray(0, 5000),
        400,
        'BAD_REQUEST',
      ],
      [
        // An unsigned JWS (alg none, empty signature) is refused as malformed before its claims are read.
        'empty announcement',
        delivery('eyJhbGciOiJub25lIn0.e30.', good, first.manifest_envelope),
        400,
        'JWS_MALFORMED',
      ],
      [
        'forged announcement',
        delivery(
          first.announcement.split('.').slice(0, 2).concat(second.announcement.split('.')[2]!).join('.'),
          good,
          first.manifest_envelope,
        ),
        400,
        'JWS_SIGNATURE_INVALID',
      ],
      [
        'two parts only',
        Buffer.concat([part('bnd', first.announcement), part('bnd', good), Buffer.from('--bnd--\r\n')]),
        400,
        'BAD_REQUEST',
      ],
    ];
    for (const [name, body, status, code] of cases) {
      const res = await post(body);
      expect(res.status, `${name}: ${res.text.slice(0, 300)}`).toBe(status);
      expect(res.body.issue?.[0]?.details?.coding?.[0]?.code ?? res.body.issue?.[0]?.code, name).toBe(code);
    }
    expect((await post(Buffer.from('x'), 'application/jose')).status).toBe(415);
    expect(await inboxCount()).toBe(0);
    expect(bFiles()).toEqual([]);
  });

  it('an interrupted transfer leaves no file behind', async () => {
    const body = delivery(first.announcement, readFileSync(first.content_path), first.manifest_envelope);
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${t.b.gw.url}/inbox/imaging`, {
        method: 'POST',
        headers: { 'content-type': 'multipart/related; type="application/jose"; boundary=bnd' },
      });
      req.on('error', () => resolve());
      req.write(body.subarray(0, 200_000), () => setTimeout(() => req.destroy(), 300));
    });
    await waitFor('no pending files on B', async () => (bFiles().length === 0 ? true : undefined), 5_000);
    expect(await inboxCount()).toBe(0);
  });

  it("accepts the real delivery once, answers a repeat with the same receipt, and A's job then settles it as delivered", async () => {
    const body = delivery(first.announcement, readFileSync(first.content_path), first.manifest_envelope);
    const ok = await post(body);
    expect(ok.status, ok.text).toBe(200);
    const again = await post(body);
    expect(again.status).toBe(200);
    expect(again.text).toBe(ok.text);
    expect(await inboxCount()).toBe(1);
    expect(bFiles().filter((f) => f.endsWith('.jwe'))).toHaveLength(1);
    // A's worker sends the stored delivery: B recognises the delivery id and answers the first receipt.
    t.a.worker = await startWorker(t.a.gw.app.ctx);
    const row = await waitFor(
      'A delivered',
      async () => {
        const { rows } = await t.a.gw.app.ctx.pool.query(
          'SELECT state, receipt FROM imaging_deliveries WHERE id = $1',
          [first.id],
        );
        return rows[0].state === 'delivered' ? rows[0] : undefined;
      },
      20_000,
    );
    expect(row.receipt).toBe(ok.text);
    await waitFor(
      'second delivered',
      async () => {
        const { rows } = await t.a.gw.app.ctx.pool.query('SELECT state FROM imaging_deliveries WHERE id = $1', [
          second.id,
        ]);
        return rows[0].state === 'delivered' ? true : undefined;
      },
      20_000,
    );
    expect(await inboxCount()).toBe(2);
  });
});

describe('imaging delivery retries', () => {
  let t: TwoGateways;
  beforeAll(async () => {
    t = await startTwoGateways();
  }, 60_000);
  afterAll(async () => t?.close());

  it('a failed live transmission (503) falls back to the stored file and is delivered by the job', async () => {
    const ctx = t.a.gw.app.ctx;
    const real = ctx.fetch;
    let refused = 0;
    ctx.fetch = (async (url: string | URL | Request, init?: RequestInit) => {
      if (String(url).endsWith('/inbox/imaging') && refused === 0) {
        refused++;
        return new Response('busy', { status: 503, headers: { 'retry-after': '0' } });
      }
      return real(url as string, init);
    }) as typeof fetch;
    try {
      const res = await request(t.a.gw.app.server)
        .post(`/imaging?recipient=${encodeURIComponent(t.b.gw.config.org)}`)
        .set('authorization', await t.a.ehr.bearer())
        .set('content-type', 'application/dicom')
        .send(CT);
      expect(res.status).toBe(202);
      const view = await waitFor(
        'delivered',
        async () => {
          const r = await request(t.a.gw.app.server)
            .get(res.headers['content-location'] as string)
            .set('authorization', await t.a.ehr.bearer());
          return r.body.recipients?.[0]?.state === 'delivered' ? r.body : undefined;
        },
        30_000,
      );
      const attempts = view.recipients[0].attempts as Array<{ outcome: string; http_status: number | null }>;
      expect(attempts[0]).toMatchObject({ outcome: 'transient', http_status: 503 });
      expect(attempts.at(-1)!.outcome).toBe('delivered');
      expect(refused).toBe(1);
      expect(filesUnder(join(t.a.gw.config.dataDir, 'imaging'))).toEqual([]);
    } finally {
      ctx.fetch = real;
    }
  });
});

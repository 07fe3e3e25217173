import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import request from 'supertest';
import { startTwoGateways, type Peer, type TwoGateways } from '../helpers/two-gateways.ts';
import { DICOM_DIR, filesUnder } from '../helpers/imaging.ts';
import { peerVerifyDual } from '../helpers/pq-peer.ts';
import { signCompact } from '../../src/jose/jws.ts';
import { openHybridCompactJwe, sealHybridCompact } from '../../src/jose/pq/hybrid-jwe.ts';
import { gatewayDecryptionKeys, gatewayKemKeys } from '../../src/inbound/decryption-keys.ts';
import { sealCompact } from '../../src/jose/seal.ts';
import { sealStreamToFile } from '../../src/jose/stream-seal.ts';
import { signAnnouncement } from '../../src/protocol/imaging-announcement.ts';
import { signImagingReceipt } from '../../src/protocol/imaging-manifest.ts';
import { verifyDeliveryReceipt as verifyImagingReceipt } from '../../src/outbound/transmit.ts';
import { startWorker } from '../../src/worker/runner.ts';
import { imagingDelivered, pullImaging, submitImaging } from '../helpers/imaging-exchange.ts';

/**
 * Imaging under protocol v2 (PROTOCOL.md §10.8): two gateways that both
 * publish post-quantum keys exchange DICOM with a hybrid content envelope, a
 * dual-signed announcement, a hybrid manifest envelope around a dual-signed
 * manifest, and a dual-signed receipt, live (cut-through) and from the
 * stored file; a v1 delivery from a v2 sender is refused as a downgrade,
 * mixed forms are refused, and a gateway with PROTOCOL_V2=off still
 * exchanges v1 with a v2 one.
 */
const CT = readFileSync(join(DICOM_DIR, 'CT1_UNC.explicit_little_endian.dcm'));
const US = readFileSync(join(DICOM_DIR, 'encapsulated/multi-frame/IM00001.implicit_little_endian.dcm'));
const HYBRID = 'x-ECDH-ES+ML-KEM-768';

type Jwk = Record<string, string> & { kid: string };
const jwksOf = async (p: Peer) =>
  ((await (await fetch(`${p.gw.url}/.well-known/jwks.json`)).json()) as { keys: Jwk[] }).keys;
const headerOf = (compact: string) =>
  JSON.parse(Buffer.from(compact.slice(0, compact.indexOf('.')), 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;

const submit = (from: Peer, to: Peer, body: Buffer) => submitImaging(from, to, body);
const delivered = imagingDelivered;
const pull = pullImaging;

async function stored(to: Peer, messageId: string): Promise<{ envelope: string; content: string }> {
  const { rows } = await to.gw.app.ctx.pool.query<{ envelope: string; content_path: string }>(
    `SELECT (SELECT e.envelope FROM inbox_envelopes e WHERE e.message_id = m.id) AS envelope, c.content_path FROM inbox_messages m JOIN imaging_inbox_content c ON c.message_id = m.id
      WHERE m.id = $1`,
    [messageId],
  );
  return { envelope: rows[0]!.envelope, content: readFileSync(rows[0]!.content_path, 'latin1') };
}

async function auditDetails(p: Peer, type: string): Promise<string[]> {
  const { rows } = await p.gw.app.ctx.pool.query<{ entry: string }>(
    'SELECT entry FROM audit_log WHERE type = $1 ORDER BY idx',
    [type],
  );
  return rows.map((r) => r.entry);
}

describe('imaging under protocol v2 between two gateways, cut through', () => {
  let t: TwoGateways;
  beforeAll(async () => {
    t = await startTwoGateways({ PROTOCOL_V2: 'on' });
    // No delivery jobs: what arrives came by the live (cut-through) transmission.
    for (const p of [t.a, t.b]) {
      await p.worker!.stop();
      p.worker = undefined;
    }
  }, 60_000);
  afterAll(async () => t?.close());

  it('a DICOM study goes A → B as v2 end to end and B’s EHR gets it byte for byte', { timeout: 120_000 }, async () => {
    const { a, b } = t;
    const bKeys = await jwksOf(b);
    const bKem = bKeys.find((k) => k.alg === 'ML-KEM-768')!;
    const r = await delivered(a, await submit(a, b, CT));
    // The receipt is dual-signed (ES256 + ML-DSA-65), checked here with an independent verifier.
    const receipt = JSON.parse(r.receipt!) as { signatures: Array<{ protected: string }> };
    expect(receipt.signatures.map((s) => JSON.parse(Buffer.from(s.protected, 'base64url').toString()).alg)).toEqual([
      'ES256',
      'ML-DSA-65',
    ]);
    const kidOf = (s: { protected: string }) => JSON.parse(Buffer.from(s.protected, 'base64url').toString()).kid;
    const ec = bKeys.find((k) => k.kid === kidOf(receipt.signatures[0]!))!;
    const pq = bKeys.find((k) => k.kid === kidOf(receipt.signatures[1]!))!;
    const checked = peerVerifyDual(r.receipt!, { ec: { x: ec.x!, y: ec.y! }, pq: { pub: pq.pub! } });
    expect(checked.ok).toBe(true);
    const claims = JSON.parse(checked.payload) as Record<string, string>;
    expect(claims).toMatchObject({ delivery: r.delivery, digest: r.manifest_digest, content_digest: r.content_digest });
    // B keeps the content and the manifest sealed as received: both hybrid, to B's ML-KEM key.
    const got = await pull(b, r.delivery);
    expect(got.body.equals(CT)).toBe(true);
    const s = await stored(b, got.id);
    expect(headerOf(s.content)).toMatchObject({ alg: HYBRID, kem_kid: bKem.kid, cty: 'application/dicom' });
    expect(headerOf(s.envelope)).toMatchObject({ alg: HYBRID, kem_kid: bKem.kid, cty: 'JWT' });
    // The ML-DSA-65 key that verified the manifest is kept with it, to verify it again on every read.
    const aPq = (await jwksOf(a)).find((k) => k.alg === 'ML-DSA-65')!;
    const kept = await b.gw.app.ctx.pool.query<{ pq: { pub: string } | null }>(
      'SELECT (SELECT k.jwk FROM inbox_sender_pq_keys k WHERE k.thumbprint = m.sender_pq_key) AS pq FROM inbox_messages m WHERE id = $1',
      [got.id],
    );
    expect(kept.rows[0]!.pq?.pub).toBe(aPq.pub);
    const accepted = (await auditDetails(b, 'inbox.accepted')).find((e) => e.includes(r.delivery))!;
    expect(accepted).toContain('"protocol":2');
    expect(accepted).toContain('"senderPqKid"');
    // The manifest read is the v2 message too (its dual signature checked again on read).
    const manifest = await request(b.gw.app.server)
      .get(`/inbox/messages/${got.id}`)
      .set('authorization', await b.ehr.bearer());
    expect(manifest.status).toBe(200);
    expect(JSON.parse(manifest.text)).toMatchObject({ length: CT.length });
    // At rest, the v2 content file swapped for a v1 one of the same bytes (sealed to B's EC key only) is not served.
    const { rows } = await b.gw.app.ctx.pool.query<{ content_path: string }>(
      'SELECT content_path FROM imaging_inbox_content WHERE message_id = $1',
      [got.id],
    );
    const bEc = bKeys.find((k) => k.use === 'enc' && k.kty === 'EC')!;
    await sealStreamToFile(Readable.from([CT]), bEc as never, 'application/dicom', `${rows[0]!.content_path}.v1`);
    renameSync(`${rows[0]!.content_path}.v1`, rows[0]!.content_path);
    const swapped = await request(b.gw.app.server)
      .get(`/inbox/messages/${got.id}/content`)
      .set('authorization', await b.ehr.bearer());
    expect(swapped.status).toBe(500);
  });

  it('and B → A the same way, for another study', { timeout: 120_000 }, async () => {
    const { a, b } = t;
    const r = await delivered(b, await submit(b, a, US));
    expect(r.receipt!.startsWith('{')).toBe(true);
    expect((await pull(a, r.delivery)).body.equals(US)).toBe(true);
  });

  it(
    'a partner that stops publishing its post-quantum keys is held: its v1 delivery is stored, not sent, not even live',
    { timeout: 60_000 },
    async () => {
      const { a, b } = t;
      const ecOnly = (await jwksOf(b)).filter((k) => k.kty !== 'AKP');
      await request(a.gw.app.server)
        .put(`/admin/partners/${encodeURIComponent(b.gw.config.org)}`)
        .set('authorization', await a.admin.bearer())
        .send({ name: `gateway ${b.gw.config.org}`, endpoint: `${b.gw.config.baseUrl}/inbox`, jwks: { keys: ecOnly } })
        .expect(200);
      const location = await submit(a, b, CT);
      const { rows } = await a.gw.app.ctx.pool.query<{ id: string; manifest_envelope: string }>(
        'SELECT id, manifest_envelope FROM imaging_deliveries WHERE exchange_id = $1',
        [location.split('/').pop()],
      );
      expect(headerOf(rows[0]!.manifest_envelope).alg).toBe('ECDH-ES');
      // A live copy would reach B now, and B would refuse it as a downgrade (failing the delivery).
      await new Promise((r) => setTimeout(r, 3_000));
      const { rows: after } = await a.gw.app.ctx.pool.query<{ state: string; attempts: number }>(
        'SELECT state, attempts FROM imaging_deliveries WHERE id = $1',
        [rows[0]!.id],
      );
      expect(after[0]).toMatchObject({ state: 'pending', attempts: 0 });
      const received = await b.gw.app.ctx.pool.query('SELECT 1 FROM inbox_messages WHERE jti = $1', [rows[0]!.id]);
      expect(received.rowCount).toBe(0);
    },
  );
});

describe('imaging v2: the receiver’s and the sender’s rules', () => {
  let t: TwoGateways;
  let parts: { announcement: string; manifest: string; content: Buffer; id: string };
  let bEc: Jwk;
  let bKem: Jwk;
  beforeAll(async () => {
    t = await startTwoGateways({ PROTOCOL_V2: 'on', IMAGING_CUT_THROUGH: 'off' });
    await t.a.worker!.stop();
    t.a.worker = undefined;
    const location = await submit(t.a, t.b, CT);
    const { rows } = await t.a.gw.app.ctx.pool.query<{
      id: string;
      announcement: string;
      manifest_envelope: string;
      content_path: string;
    }>('SELECT id, announcement, manifest_envelope, content_path FROM imaging_deliveries WHERE exchange_id = $1', [
      location.split('/').pop(),
    ]);
    const row = rows[0]!;
    parts = {
      id: row.id,
      announcement: row.announcement,
      manifest: row.manifest_envelope,
      content: readFileSync(row.content_path),
    };
    const keys = await jwksOf(t.b);
    bEc = keys.find((k) => k.use === 'enc' && k.kty === 'EC')!;
    bKem = keys.find((k) => k.alg === 'ML-KEM-768')!;
  }, 60_000);
  afterAll(async () => t?.close());

  const part = (b: string, body: string | Buffer) =>
    Buffer.concat([
      Buffer.from(`--${b}\r\nContent-Type: application/jose\r\n\r\n`),
      Buffer.from(body),
      Buffer.from('\r\n'),
    ]);
  const body = (announcement: string, content: Buffer, manifest: string) =>
    Buffer.concat([part('bnd', announcement), part('bnd', content), part('bnd', manifest), Buffer.from('--bnd--\r\n')]);
  const post = (b: Buffer) =>
    request(t.b.gw.app.server)
      .post('/inbox/imaging')
      .set('content-type', 'multipart/related; type="application/jose"; boundary=bnd')
      .send(b);
  const codeOf = (res: request.Response) => res.body.issue?.[0]?.details?.coding?.[0]?.code;

  it('stores what A sealed as v2: a dual-signed announcement, a hybrid content and manifest envelope', () => {
    const ann = JSON.parse(parts.announcement) as { signatures: unknown[] };
    expect(ann.signatures).toHaveLength(2);
    expect(headerOf(parts.content.toString('latin1'))).toMatchObject({ alg: HYBRID, kem_kid: bKem.kid });
    expect(headerOf(parts.manifest)).toMatchObject({ alg: HYBRID, kem_kid: bKem.kid });
  });

  it('refuses a v1 delivery from A, which publishes an ML-DSA-65 key, as a downgrade, audited, before the bulk', async () => {
    const { a, b } = t;
    const signer = (await a.gw.app.ctx.keyring.fresh()).signer();
    const v1Announcement = await signAnnouncement(signer, {
      iss: a.gw.config.org,
      aud: b.gw.config.org,
      iat: Math.floor(Date.now() / 1000),
      jti: '018f0000-0000-7000-8000-00000000d001',
      exchange: '018f0000-0000-7000-8000-00000000e001',
    });
    expect(v1Announcement.split('.')).toHaveLength(3);
    const res = await post(body(v1Announcement, parts.content, parts.manifest));
    expect(res.status, res.text.slice(0, 300)).toBe(400);
    expect(codeOf(res)).toBe('PROTOCOL_DOWNGRADE');
    const refusals = await auditDetails(b, 'inbox.refused');
    expect(refusals.some((e) => e.includes('PROTOCOL_DOWNGRADE'))).toBe(true);
  });

  it('refuses mixed forms: a v1 content envelope, a v1 manifest envelope, a compact manifest JWS in a hybrid envelope', async () => {
    const { a } = t;
    const v1Content = join(t.b.gw.config.dataDir, 'v1-content.jwe');
    await sealStreamToFile(Readable.from([CT]), bEc as never, 'application/dicom', v1Content);
    const compact = await signCompact((await a.gw.app.ctx.keyring.fresh()).signer(), '{}', { typ: 'exchange+jwt' });
    const cases: Array<[string, Buffer, string]> = [
      ['v1 content', body(parts.announcement, readFileSync(v1Content), parts.manifest), 'PROTOCOL_MIXED'],
      [
        'v1 manifest envelope',
        body(parts.announcement, parts.content, sealCompact(compact, bEc as never)),
        'PROTOCOL_MIXED',
      ],
      [
        'compact JWS in a hybrid envelope',
        body(parts.announcement, parts.content, sealHybridCompact(compact, bEc as never, bKem as never)),
        'PROTOCOL_MIXED',
      ],
    ];
    for (const [name, b, code] of cases) {
      const res = await post(b);
      expect(res.status, `${name}: ${res.text.slice(0, 300)}`).toBeGreaterThanOrEqual(400);
      expect(res.status, name).toBeLessThan(500);
      expect(codeOf(res), name).toBe(code);
    }
    const { rows } = await t.b.gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM inbox_messages');
    expect(rows[0].n).toBe(0);
    expect(filesUnder(join(t.b.gw.config.dataDir, 'imaging', 'inbox'))).toEqual([]);
  });

  it('refuses a v2 announcement or manifest whose ML-DSA-65 signature does not verify, though its ES256 one does', async () => {
    const b = t.b;
    const flipSig = (jws: string) => {
      const doc = JSON.parse(jws) as { signatures: Array<{ signature: string }> };
      const sig = Buffer.from(doc.signatures[1]!.signature, 'base64url');
      sig[100]! ^= 0x01;
      doc.signatures[1]!.signature = sig.toString('base64url');
      return JSON.stringify(doc);
    };
    const res = await post(body(flipSig(parts.announcement), parts.content, parts.manifest));
    expect(res.status, res.text.slice(0, 300)).toBe(400);
    expect(codeOf(res)).toBe('JWS_SIGNATURE_INVALID');
    // The manifest A signed, opened with B's keys, its ML-DSA signature broken, sealed to B again.
    const opened = await openHybridCompactJwe(parts.manifest, {
      hsm: b.gw.app.ctx.hsm,
      kdf: b.gw.config.hsmKdf,
      resolveKey: gatewayDecryptionKeys(b.gw.app.ctx.keyring),
      resolveKemKey: gatewayKemKeys(b.gw.app.ctx.keyring),
    });
    const forged = sealHybridCompact(flipSig(opened.plaintext.toString('utf8')), bEc as never, bKem as never);
    const res2 = await post(body(parts.announcement, parts.content, forged));
    expect(res2.status, res2.text.slice(0, 300)).toBe(400);
    expect(codeOf(res2)).toBe('JWS_SIGNATURE_INVALID');
    const { rows } = await b.gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM inbox_messages');
    expect(rows[0].n).toBe(0);
  });

  it('the sender requires a dual receipt for a v2 delivery and refuses a compact one (and the reverse)', async () => {
    const { a, b } = t;
    const bKeys = await b.gw.app.ctx.keyring.fresh();
    const partner = (await a.gw.app.ctx.directory.get(b.gw.config.org))!;
    const want = { delivery: parts.id, digest: 'sha-256=manifest', contentDigest: 'sha-256=content' };
    const claims = {
      iss: b.gw.config.org,
      aud: a.gw.config.org,
      delivery: want.delivery,
      digest: want.digest,
      contentDigest: want.contentDigest,
    };
    const compact = (await signImagingReceipt(bKeys.signer(), claims)).receipt;
    const dual = (await signImagingReceipt(bKeys.signer(), claims, await bKeys.pqSigner())).receipt;
    const ctx = a.gw.app.ctx;
    await expect(verifyImagingReceipt(ctx, partner, dual, { ...want, protocol: 2 })).resolves.toMatchObject({
      content_digest: want.contentDigest,
    });
    await expect(verifyImagingReceipt(ctx, partner, compact, { ...want, protocol: 2 })).rejects.toMatchObject({
      code: 'PROTOCOL_DOWNGRADE',
    });
    await expect(verifyImagingReceipt(ctx, partner, dual, { ...want, protocol: 1 })).rejects.toMatchObject({
      code: 'PROTOCOL_MIXED',
    });
    await expect(verifyImagingReceipt(ctx, partner, compact, { ...want, protocol: 1 })).resolves.toBeDefined();
    await expect(
      verifyImagingReceipt(ctx, partner, dual, { ...want, protocol: 2, contentDigest: 'sha-256=other' }),
    ).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
    // One signature swapped for another receipt's: refused although each is a valid signature of B's.
    const other = JSON.parse(
      (await signImagingReceipt(bKeys.signer(), { ...claims, delivery: 'another' }, await bKeys.pqSigner())).receipt,
    );
    const spliced = JSON.parse(dual);
    spliced.signatures[1] = other.signatures[1];
    await expect(
      verifyImagingReceipt(ctx, partner, JSON.stringify(spliced), { ...want, protocol: 2 }),
    ).rejects.toMatchObject({ code: 'JWS_SIGNATURE_INVALID' });
  });

  it('A’s job then delivers the stored v2 delivery, settled by a dual receipt', { timeout: 60_000 }, async () => {
    const { a, b } = t;
    a.worker = await startWorker(a.gw.app.ctx);
    const { rows } = await a.gw.app.ctx.pool.query<{ exchange_id: string }>(
      'SELECT exchange_id FROM imaging_deliveries WHERE id = $1',
      [parts.id],
    );
    const r = await delivered(a, `/imaging/${rows[0]!.exchange_id}`);
    expect(JSON.parse(r.receipt!).signatures).toHaveLength(2);
    expect((await pull(b, r.delivery)).body.equals(CT)).toBe(true);
  });
});

describe('imaging between a v1 gateway (PROTOCOL_V2=off) and a v2 one', () => {
  let t: TwoGateways;
  beforeAll(async () => {
    t = await startTwoGateways({}, {}, { a: { PROTOCOL_V2: 'off' }, b: { PROTOCOL_V2: 'on' } });
  }, 60_000);
  afterAll(async () => t?.close());

  it('both directions go as v1, byte for byte, with compact receipts', { timeout: 120_000 }, async () => {
    const { a, b } = t;
    for (const [from, to, bytes] of [
      [a, b, CT],
      [b, a, US],
    ] as const) {
      const r = await delivered(from, await submit(from, to, bytes));
      expect(r.receipt!.split('.')).toHaveLength(3);
      const got = await pull(to, r.delivery);
      expect(got.body.equals(bytes)).toBe(true);
      const s = await stored(to, got.id);
      expect(headerOf(s.content).alg).toBe('ECDH-ES');
      expect(headerOf(s.envelope).alg).toBe('ECDH-ES');
    }
  });
});

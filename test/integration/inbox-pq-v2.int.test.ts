import { envelopeVersion } from '../../src/protocol/v2-negotiation.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { compactVerify } from 'jose';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { claimsFor, publishedSigKey, seal, signContent, softPartner, type SoftPartner } from '../helpers/envelopes.ts';
import { createPqPeer, peerVerifyDual } from '../helpers/pq-peer.ts';
import { envelopeDigest } from '../../src/protocol/wire.ts';
import { inboxReader } from '../../src/inbound/inbox-read.ts';
import { sealHybridCompact } from '../../src/jose/pq/hybrid-jwe.ts';
import { transmit } from '../../src/outbound/transmit.ts';

type Outcome = { resourceType: string; issue: Array<{ details: { coding: Array<{ code: string }> } }> };
type GatewayJwk = { kty: string; kid: string; use: string; alg?: string; crv?: string; x?: string; y?: string };

const bundle = () => ({
  resourceType: 'Bundle',
  type: 'collection',
  entry: [{ fullUrl: `urn:uuid:${randomUUID()}`, resource: { resourceType: 'Basic', id: 'pq' } }],
});

const flip = (b64: string, at = 10) => {
  const b = Buffer.from(b64, 'base64url');
  b[at]! ^= 0x01;
  return b.toString('base64url');
};

/** Re-encode a compact JWE's protected header after `edit`; the rest is kept as it was. */
function editHeader(jwe: string, edit: (h: Record<string, unknown>) => void): string {
  const [p, ...rest] = jwe.split('.');
  const header = JSON.parse(Buffer.from(p!, 'base64url').toString('utf8')) as Record<string, unknown>;
  edit(header);
  return [Buffer.from(JSON.stringify(header)).toString('base64url'), ...rest].join('.');
}

/** Change one signature entry of a dual-signed JWS (JSON serialization). */
function editSignatures(jws: string, edit: (s: Array<{ protected: string; signature: string }>) => unknown[]): string {
  const doc = JSON.parse(jws) as { payload: string; signatures: Array<{ protected: string; signature: string }> };
  return JSON.stringify({ payload: doc.payload, signatures: edit(doc.signatures) });
}

describe('POST /inbox, protocol v2: a hybrid envelope with a dual-signed JWS from an independent peer, and its refusals', () => {
  let gw: TestGateway;
  let ours: GatewayJwk[];
  let ec: GatewayJwk & { kid: string; crv: string; x: string; y: string };
  let kem: { pub: string; kid: string };
  let v1Partner: SoftPartner;
  const peer = createPqPeer();
  const peerId = 'https://pq-peer.test';
  const post = (body: string) =>
    fetch(`${gw.url}/inbox`, { method: 'POST', headers: { 'content-type': 'application/jose' }, body });
  const count = async (table: string, where = 'true', args: unknown[] = []) =>
    Number((await gw.app.ctx.pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`, args)).rows[0].n);
  const v2Claims = () => claimsFor({ id: peerId }, gw.config.org, bundle());
  const v2Envelope = (jws: string) => peer.seal(jws, { ec, kem });
  const dualSigned = (claims: object = v2Claims()) => peer.signDual(JSON.stringify(claims), 'exchange+jwt');

  beforeAll(async () => {
    gw = await startTestGateway({ PROTOCOL_V2: 'on' });
    const { ecEnc, kemEnc, ecSig, pqSig } = peer.jwks;
    // AKP keys after the EC keys, as PROTOCOL.md §14.1 asks of a publisher.
    await gw.app.ctx.directory.add({
      id: peerId,
      endpoint: `${peerId}/inbox`,
      jwks: { keys: [ecSig, ecEnc, pqSig, kemEnc] },
    });
    v1Partner = await softPartner('https://v1-partner.test');
    await gw.app.ctx.directory.add({ id: v1Partner.id, endpoint: `${v1Partner.id}/inbox`, jwks: v1Partner.jwks });
    ours = ((await (await fetch(`${gw.url}/.well-known/jwks.json`)).json()) as { keys: GatewayJwk[] }).keys;
    ec = ours.find((k) => k.use === 'enc' && k.kty === 'EC') as typeof ec;
    kem = ours.find((k) => k.alg === 'ML-KEM-768') as unknown as typeof kem;
  });
  afterAll(async () => gw?.close());

  it('accepts the peer’s v2 message: the receipt is dual-signed and the peer verifies both signatures with our JWKS', async () => {
    const claims = v2Claims();
    const envelope = v2Envelope(dualSigned(claims));
    const res = await post(envelope);
    expect(res.status).toBe(200);
    const receipt = await res.text();
    const doc = JSON.parse(receipt) as { signatures: Array<{ protected: string }> };
    const headers = doc.signatures.map((s) => JSON.parse(Buffer.from(s.protected, 'base64url').toString()));
    expect(headers.map((h) => [h.alg, h.typ])).toEqual([
      ['ES256', 'exchange-receipt+jwt'],
      ['ML-DSA-65', 'exchange-receipt+jwt'],
    ]);
    const ecSig = ours.find((k) => k.kid === headers[0].kid) as { x: string; y: string };
    const pqSig = ours.find((k) => k.kid === headers[1].kid) as unknown as { pub: string; alg: string };
    expect(pqSig.alg).toBe('ML-DSA-65');
    const verified = peerVerifyDual(receipt, { ec: { x: ecSig.x, y: ecSig.y }, pq: { pub: pqSig.pub } });
    expect(verified.ok).toBe(true);
    expect(JSON.parse(verified.payload)).toMatchObject({
      iss: gw.config.org,
      aud: peerId,
      delivery: claims.jti,
      digest: envelopeDigest(envelope),
      status: 'accepted',
    });
    // Either signature alone, tampered, fails the peer's check: it really checks both.
    const badPq = editSignatures(receipt, ([es, pq]) => [es, { ...pq!, signature: flip(pq!.signature) }]);
    expect(peerVerifyDual(badPq, { ec: { x: ecSig.x, y: ecSig.y }, pq: { pub: pqSig.pub } }).ok).toBe(false);

    const { rows } = await gw.app.ctx.pool.query(
      `SELECT m.*, (SELECT e.envelope FROM inbox_envelopes e WHERE e.message_id = m.id) AS envelope,
              (SELECT k.jwk FROM inbox_sender_pq_keys k WHERE k.thumbprint = m.sender_pq_key) AS sender_pq_jwk
         FROM inbox_messages m WHERE jti = $1`,
      [claims.jti],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ sender: peerId, envelope, receipt, sender_kid: 'peer-sig' });
    expect(rows[0].sender_pq_jwk).toMatchObject({ kty: 'AKP', alg: 'ML-DSA-65', pub: peer.jwks.pqSig.pub });
    const audit = await gw.app.ctx.pool.query(
      `SELECT entry FROM audit_log WHERE type = 'inbox.accepted' AND entry LIKE $1`,
      [`%${claims.jti}%`],
    );
    expect(audit.rows).toHaveLength(1);
    expect(JSON.parse(audit.rows[0].entry).detail).toMatchObject({ protocol: 2, senderPqKid: 'peer-pq-sig' });
    expect(audit.rows[0].entry).not.toContain('Basic');

    // The stored v2 message opens and re-verifies (both signatures) when the EHR reads it.
    const read = await inboxReader(gw.app.ctx).read(rows[0].id, { clientId: 'pq-test', all: true });
    expect(JSON.parse(read.bundle)).toEqual(claims.content);

    // The same bytes again: the first (dual-signed) receipt, nothing new stored.
    const again = await post(envelope);
    expect(again.status).toBe(200);
    expect(await again.text()).toBe(receipt);
    expect(await count('inbox_messages', 'jti = $1', [claims.jti])).toBe(1);
  });

  const refusals: Array<[string, () => string, number, string]> = [
    [
      'a flipped byte in the ES256 signature',
      () => v2Envelope(editSignatures(dualSigned(), ([es, pq]) => [{ ...es!, signature: flip(es!.signature) }, pq])),
      400,
      'JWS_SIGNATURE_INVALID',
    ],
    [
      'a flipped byte in the ML-DSA-65 signature',
      () => v2Envelope(editSignatures(dualSigned(), ([es, pq]) => [es, { ...pq!, signature: flip(pq!.signature) }])),
      400,
      'JWS_SIGNATURE_INVALID',
    ],
    [
      'the ML-DSA-65 signature removed',
      () => v2Envelope(editSignatures(dualSigned(), ([es]) => [es])),
      400,
      'JWS_MALFORMED',
    ],
    [
      'the ES256 signature removed',
      () => v2Envelope(editSignatures(dualSigned(), ([, pq]) => [pq])),
      400,
      'JWS_MALFORMED',
    ],
    [
      'a flipped byte in the ML-KEM ciphertext (ek)',
      () => editHeader(v2Envelope(dualSigned()), (h) => (h.ek = flip(h.ek as string, 100))),
      400,
      'JWE_DECRYPT_FAILED',
    ],
    [
      'a flipped byte in the ECDH part (epk.x)',
      () =>
        editHeader(v2Envelope(dualSigned()), (h) => {
          const epk = h.epk as { x: string };
          epk.x = flip(epk.x, 5);
        }),
      400,
      'JWE_INVALID_EPK',
    ],
    [
      'another valid ECDH ephemeral key (epk)',
      () =>
        editHeader(v2Envelope(dualSigned()), (h) => {
          const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
          h.epk = { kty: 'EC', crv: 'P-256', x: other.x, y: other.y };
        }),
      400,
      'JWE_DECRYPT_FAILED',
    ],
    [
      'a sender that leaves the ML-KEM secret out of the KDF',
      () => peer.seal(dualSigned(), { ec, kem }, { omitT: true }),
      400,
      'JWE_DECRYPT_FAILED',
    ],
    [
      'mixed: a hybrid envelope holding a compact JWS',
      () => v2Envelope(peer.signCompact(JSON.stringify(v2Claims()), 'exchange+jwt')),
      400,
      'PROTOCOL_MIXED',
    ],
    ['mixed: a v1 envelope holding a dual-signed JWS', () => seal(ec, dualSigned()), 400, 'PROTOCOL_MIXED'],
    [
      'downgrade: a v1 message from a sender that publishes an ML-DSA-65 key',
      () => seal(ec, peer.signCompact(JSON.stringify(v2Claims()), 'exchange+jwt')),
      400,
      'PROTOCOL_DOWNGRADE',
    ],
  ];

  it.each(refusals)('%s: 4xx OperationOutcome, audited, nothing stored', async (_name, make, status, code) => {
    const envelope = make();
    const digest = envelopeDigest(envelope);
    const before = await count('inbox_messages');
    const res = await post(envelope);
    expect(res.status).toBe(status);
    const outcome = (await res.json()) as Outcome;
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0]!.details.coding[0]!.code).toBe(code);
    expect(await count('inbox_messages')).toBe(before);
    const refused = await gw.app.ctx.pool.query(
      `SELECT entry FROM audit_log WHERE type = 'inbox.refused' AND entry LIKE $1`,
      [`%${digest}%`],
    );
    expect(refused.rows).toHaveLength(1);
    expect(JSON.parse(refused.rows[0].entry).detail).toMatchObject({ reason: code, status });
  });

  it('the downgrade refusal names the sender (its signature verified) and the rule', async () => {
    const claims = v2Claims();
    const envelope = seal(ec, peer.signCompact(JSON.stringify(claims), 'exchange+jwt'));
    const res = await post(envelope);
    expect(res.status).toBe(400);
    const outcome = (await res.json()) as { issue: Array<{ diagnostics: string }> };
    expect(outcome.issue[0]!.diagnostics).toMatch(/downgrade/);
    const refused = await gw.app.ctx.pool.query(
      `SELECT entry FROM audit_log WHERE type = 'inbox.refused' AND entry LIKE $1`,
      [`%${claims.jti}%`],
    );
    expect(refused.rows).toHaveLength(1);
    expect(JSON.parse(refused.rows[0].entry).agent).toMatchObject({ type: 'partner', id: peerId });
  });

  it('a sender that starts publishing ML-DSA-65: the envelope accepted before still gets its first receipt, a new v1 one is a downgrade', async () => {
    const upgrading = createPqPeer();
    const id = 'https://upgrading-peer.test';
    const { ecSig, ecEnc, pqSig } = upgrading.jwks;
    await gw.app.ctx.directory.add({ id, endpoint: `${id}/inbox`, jwks: { keys: [ecSig, ecEnc] } });
    const v1 = () =>
      seal(ec, upgrading.signCompact(JSON.stringify(claimsFor({ id }, gw.config.org, bundle())), 'exchange+jwt'));
    const before = v1();
    const first = await post(before);
    expect(first.status).toBe(200);
    const receipt = await first.text();
    await gw.app.ctx.directory.update({ id, endpoint: `${id}/inbox`, jwks: { keys: [ecSig, ecEnc, pqSig] } });
    const retry = await post(before);
    expect(retry.status).toBe(200);
    expect(await retry.text()).toBe(receipt);
    const fresh = await post(v1());
    expect(fresh.status).toBe(400);
    expect(((await fresh.json()) as Outcome).issue[0]!.details.coding[0]!.code).toBe('PROTOCOL_DOWNGRADE');
  });

  it('the ML-DSA-65 key follows the partner key rules: a withdrawn one is refused (JWS_KEY_WITHDRAWN), nothing stored', async () => {
    const rotating = createPqPeer();
    const id = 'https://rotating-peer.test';
    const { ecSig, ecEnc, pqSig, kemEnc } = rotating.jwks;
    await gw.app.ctx.directory.add({ id, endpoint: `${id}/inbox`, jwks: { keys: [ecSig, ecEnc, pqSig, kemEnc] } });
    const message = () => {
      const claims = claimsFor({ id }, gw.config.org, bundle());
      return {
        claims,
        envelope: rotating.seal(rotating.signDual(JSON.stringify(claims), 'exchange+jwt'), { ec, kem }),
      };
    };
    expect((await post(message().envelope)).status).toBe(200);
    // The partner replaces its ML-DSA key with another under a new kid: the old kid is gone from its set.
    const next = { ...createPqPeer().jwks.pqSig, kid: 'pq-sig-2' };
    await gw.app.ctx.directory.update({ id, endpoint: `${id}/inbox`, jwks: { keys: [ecSig, ecEnc, next, kemEnc] } });
    const { claims, envelope } = message();
    const res = await post(envelope);
    expect(res.status).toBe(400);
    expect(((await res.json()) as Outcome).issue[0]!.details.coding[0]!.code).toBe('JWS_KEY_WITHDRAWN');
    expect(await count('inbox_messages', 'jti = $1', [claims.jti])).toBe(0);
  });

  it('with PROTOCOL_V2=off this gateway publishes no post-quantum keys, so the same v1 message is accepted', async () => {
    const { inboxReceiver } = await import('../../src/inbound/receive.ts');
    const receive = inboxReceiver({ ...gw.app.ctx, config: { ...gw.config, protocolV2: 'off' } });
    const claims = v2Claims();
    const result = await receive(seal(ec, peer.signCompact(JSON.stringify(claims), 'exchange+jwt')));
    expect(result.duplicate).toBe(false);
    expect(result.receipt.split('.')).toHaveLength(3);
    expect(await count('inbox_messages', 'jti = $1', [claims.jti])).toBe(1);
  });

  it('a v1-only sender still gets v1: accepted, a compact receipt, no post-quantum key recorded', async () => {
    const claims = claimsFor(v1Partner, gw.config.org, bundle());
    const envelope = seal(ec, await signContent(v1Partner, claims));
    const res = await post(envelope);
    expect(res.status).toBe(200);
    const receipt = await res.text();
    expect(receipt.split('.')).toHaveLength(3);
    const kid = JSON.parse(Buffer.from(receipt.split('.')[0]!, 'base64url').toString()).kid as string;
    const { payload } = await compactVerify(receipt, await publishedSigKey(gw.url, kid));
    expect(JSON.parse(Buffer.from(payload).toString())).toMatchObject({
      delivery: claims.jti,
      digest: envelopeDigest(envelope),
    });
    const { rows } = await gw.app.ctx.pool.query(
      'SELECT (SELECT k.jwk FROM inbox_sender_pq_keys k WHERE k.thumbprint = m.sender_pq_key) AS sender_pq_jwk FROM inbox_messages m WHERE jti = $1',
      [claims.jti],
    );
    expect(rows).toEqual([{ sender_pq_jwk: null }]);
    const audit = await gw.app.ctx.pool.query(
      `SELECT entry FROM audit_log WHERE type = 'inbox.accepted' AND entry LIKE $1`,
      [`%${claims.jti}%`],
    );
    expect(JSON.parse(audit.rows[0].entry).detail).toMatchObject({ protocol: 1 });
  });

  describe('transmit: the receipt of one of our deliveries to a v2 partner', () => {
    const answering = (receipt: string) => ({
      ...gw.app.ctx,
      fetch: (async () =>
        new Response(receipt, { status: 200, headers: { 'content-type': 'application/jose' } })) as typeof fetch,
    });
    const receiptClaims = (deliveryId: string, envelope: string) =>
      JSON.stringify({
        iss: peerId,
        aud: gw.config.org,
        iat: Math.floor(Date.now() / 1000),
        jti: randomUUID(),
        delivery: deliveryId,
        digest: envelopeDigest(envelope),
        status: 'accepted',
      });
    const send = async (envelope: string, receiptFor: (claims: string) => string) => {
      const deliveryId = randomUUID();
      const receipt = receiptFor(receiptClaims(deliveryId, envelope));
      return transmit(answering(receipt), {
        deliveryId,
        partner: await gw.app.ctx.directory.require(peerId),
        url: `${peerId}/inbox`,
        contentType: 'application/jose',
        body: () => envelope,
        signal: AbortSignal.timeout(10_000),
        expected: () => ({ digest: envelopeDigest(envelope) }),
        protocol: envelopeVersion(envelope),
      });
    };
    const v2 = () => sealHybridCompact('sealed content', peer.jwks.ecEnc, peer.jwks.kemEnc);
    const v1 = () => seal(peer.jwks.ecEnc, 'sealed content');

    it('a v2 delivery with a dual-signed receipt is delivered, the receipt kept', async () => {
      const result = await send(v2(), (c) => peer.signDual(c, 'exchange-receipt+jwt'));
      expect(result).toMatchObject({ cls: 'delivered', error: null });
      expect(result.receipt?.jws.startsWith('{')).toBe(true);
    });

    it('a v2 delivery answered with a v1 (compact) receipt is refused as a downgrade', async () => {
      const result = await send(v2(), (c) => peer.signCompact(c, 'exchange-receipt+jwt'));
      expect(result.cls).toBe('invalid-receipt');
      expect(result.error).toMatch(/protocol v2 but the receipt is a compact/);
    });

    it('a v2 delivery whose receipt has a tampered ML-DSA-65 signature, or only one signature, is refused', async () => {
      const tampered = await send(v2(), (c) =>
        editSignatures(peer.signDual(c, 'exchange-receipt+jwt'), ([es, pq]) => [
          es,
          { ...pq!, signature: flip(pq!.signature) },
        ]),
      );
      expect(tampered.cls).toBe('invalid-receipt');
      const single = await send(v2(), (c) => editSignatures(peer.signDual(c, 'exchange-receipt+jwt'), ([es]) => [es]));
      expect(single.cls).toBe('invalid-receipt');
    });

    it('a v1 delivery: a compact receipt is delivered as before, a dual-signed one refused as a mixed form', async () => {
      expect((await send(v1(), (c) => peer.signCompact(c, 'exchange-receipt+jwt'))).cls).toBe('delivered');
      const mixed = await send(v1(), (c) => peer.signDual(c, 'exchange-receipt+jwt'));
      expect(mixed.cls).toBe('invalid-receipt');
      expect(mixed.error).toMatch(/protocol v1 but the receipt is dual-signed/);
    });
  });
});

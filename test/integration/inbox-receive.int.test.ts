import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { compactVerify, CompactEncrypt, importJWK } from 'jose';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  claimsFor,
  publishedEncKey,
  publishedSigKey,
  seal,
  signContent,
  softPartner,
  type SoftPartner,
} from '../helpers/envelopes.ts';
import { envelopeDigest } from '../../src/protocol/wire.ts';

type Outcome = { resourceType: string; issue: Array<{ details: { coding: Array<{ code: string }> } }> };
const bundle = (n = 1) => ({
  resourceType: 'Bundle',
  type: 'collection',
  entry: Array.from({ length: n }, (_, i) => ({
    fullUrl: `urn:uuid:${randomUUID()}`,
    resource: { resourceType: 'Basic', id: `b${i}` },
  })),
});

describe('POST /inbox: open, verify, store sealed, receipt; every refusal a 4xx that stores nothing', () => {
  let gw: TestGateway;
  let partner: SoftPartner;
  let enc: Awaited<ReturnType<typeof publishedEncKey>>;
  const post = (body: string, contentType = 'application/jose') =>
    fetch(`${gw.url}/inbox`, { method: 'POST', headers: { 'content-type': contentType }, body });
  const count = async (table: string, where = 'true', args: unknown[] = []) =>
    Number((await gw.app.ctx.pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`, args)).rows[0].n);

  beforeAll(async () => {
    gw = await startTestGateway({ INBOX_BODY_LIMIT: '400000' });
    partner = await softPartner('https://partner-a.test');
    await gw.app.ctx.directory.add({ id: partner.id, endpoint: 'https://partner-a.test/inbox', jwks: partner.jwks });
    enc = await publishedEncKey(gw.url);
  });
  afterAll(async () => gw?.close());

  it('accepts a sealed, signed bundle: 200 with a receipt signed by the gateway that binds the delivery and the envelope digest', async () => {
    const claims = claimsFor(partner, gw.config.org, bundle(3));
    const envelope = seal(enc, await signContent(partner, claims));
    const res = await post(envelope);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/jose/);
    const receipt = await res.text();
    const [h] = receipt.split('.');
    const header = JSON.parse(Buffer.from(h!, 'base64url').toString());
    expect(header).toMatchObject({ alg: 'ES256', typ: 'exchange-receipt+jwt' });
    const { payload } = await compactVerify(receipt, await publishedSigKey(gw.url, header.kid));
    const r = JSON.parse(Buffer.from(payload).toString());
    expect(r).toMatchObject({
      iss: gw.config.org,
      aud: partner.id,
      delivery: claims.jti,
      digest: envelopeDigest(envelope),
      status: 'accepted',
    });
    expect(typeof r.jti).toBe('string');
    expect(Math.abs(r.iat - Date.now() / 1000)).toBeLessThan(60);

    const { rows } = await gw.app.ctx.pool.query(
      `SELECT m.*, (SELECT e.envelope FROM inbox_envelopes e WHERE e.message_id = m.id) AS envelope FROM inbox_messages m WHERE jti = $1`,
      [claims.jti],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      sender: partner.id,
      exchange_id: claims.exchange,
      envelope,
      envelope_digest: envelopeDigest(envelope),
      state: 'received',
      receipt,
      enc_kid: enc.kid,
      sender_kid: partner.sigKid,
    });
    // No plaintext at rest: the row holds the sealed envelope only.
    expect(JSON.stringify(rows[0])).not.toContain('Basic');
    const audit = await gw.app.ctx.pool.query(
      `SELECT entry FROM audit_log WHERE type = 'inbox.accepted' AND entry LIKE $1`,
      [`%${claims.jti}%`],
    );
    expect(audit.rows).toHaveLength(1);
    expect(audit.rows[0].entry).not.toContain('Basic');
  });

  it('answers a repeated delivery with the first receipt and stores nothing new', async () => {
    const claims = claimsFor(partner, gw.config.org, bundle());
    const envelope = seal(enc, await signContent(partner, claims));
    const first = await (await post(envelope)).text();
    const again = await post(envelope);
    expect(again.status).toBe(200);
    expect(await again.text()).toBe(first);
    expect(await count('inbox_messages', 'jti = $1', [claims.jti])).toBe(1);
    // Concurrent duplicates: exactly one row, one receipt for all.
    const dup = claimsFor(partner, gw.config.org, bundle());
    const env2 = seal(enc, await signContent(partner, dup));
    const answers = await Promise.all(Array.from({ length: 5 }, async () => (await post(env2)).text()));
    expect(new Set(answers).size).toBe(1);
    expect(await count('inbox_messages', 'jti = $1', [dup.jti])).toBe(1);
  });

  it('the same delivery written by two batches at once: one row, one accepted entry, both callers the same receipt', async () => {
    const { inboxReceiver } = await import('../../src/inbound/receive.ts');
    const [a, b] = [inboxReceiver(gw.app.ctx), inboxReceiver(gw.app.ctx)];
    const claims = claimsFor(partner, gw.config.org, bundle());
    const envelope = seal(enc, await signContent(partner, claims));
    // Hold the audit head, so both batches read "not stored yet" before either commits.
    const holder = await gw.app.ctx.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('UPDATE audit_head SET size = size');
      const both = Promise.all([a(envelope), b(envelope)]);
      const waiting = async () =>
        Number(
          (
            await gw.app.ctx.pool.query(
              `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%inbox_messages%'`,
            )
          ).rows[0].n,
        );
      for (let i = 0; i < 100 && (await waiting()) < 2; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await waiting()).toBe(2);
      await holder.query('COMMIT');
      const [ra, rb] = await both;
      expect(ra.receipt).toBe(rb.receipt);
      expect([ra.duplicate, rb.duplicate].sort()).toEqual([false, true]);
    } finally {
      holder.release();
    }
    expect(await count('inbox_messages', 'jti = $1', [claims.jti])).toBe(1);
    expect(await count('audit_log', `type = 'inbox.accepted' AND entry LIKE $1`, [`%${claims.jti}%`])).toBe(1);
    expect(await count('audit_log', `type = 'inbox.duplicate' AND entry LIKE $1`, [`%${claims.jti}%`])).toBe(1);
  });

  describe('refusals', () => {
    const refusals: Array<[string, () => Promise<string>, number, string]> = [];
    const signed = (extra: object = {}) => signContent(partner, claimsFor(partner, gw.config.org, bundle(), extra));
    refusals.push(['not a JWE', async () => 'this is not an envelope', 400, 'JWE_MALFORMED']);
    refusals.push(['a JWS instead of a JWE', async () => signed(), 400, 'JWE_MALFORMED']);
    refusals.push([
      'wrong alg (ECDH-ES+A256KW)',
      async () =>
        new CompactEncrypt(Buffer.from(await signed()))
          .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', kid: enc.kid })
          .encrypt(await importJWK({ ...enc, alg: undefined }, 'ECDH-ES+A256KW')),
      400,
      'JWE_UNSUPPORTED_ALG',
    ]);
    refusals.push([
      'wrong enc (A128GCM)',
      async () =>
        new CompactEncrypt(Buffer.from(await signed()))
          .setProtectedHeader({ alg: 'ECDH-ES', enc: 'A128GCM', kid: enc.kid })
          .encrypt(await importJWK(enc, 'ECDH-ES')),
      400,
      'JWE_UNSUPPORTED_ALG',
    ]);
    refusals.push(['zip', async () => seal(enc, await signed(), { zip: 'DEF' }), 400, 'JWE_ZIP_UNSUPPORTED']);
    refusals.push([
      'unknown kid',
      async () => seal(enc, await signed(), { kid: 'not-a-key-of-ours' }),
      400,
      'JWE_UNKNOWN_KID',
    ]);
    refusals.push([
      'no kid',
      async () => seal({ ...enc, kid: undefined }, await signed(), { kid: undefined }),
      400,
      'JWE_UNKNOWN_KID',
    ]);
    refusals.push([
      'epk not on the curve',
      async () => {
        const env = seal(enc, await signed());
        const [h, ...rest] = env.split('.');
        const header = JSON.parse(Buffer.from(h!, 'base64url').toString());
        header.epk.y = Buffer.alloc(32, 7).toString('base64url');
        return [Buffer.from(JSON.stringify(header)).toString('base64url'), ...rest].join('.');
      },
      400,
      'JWE_INVALID_EPK',
    ]);
    refusals.push([
      'bad tag',
      async () => {
        const p = seal(enc, await signed()).split('.');
        const tag = Buffer.from(p[4]!, 'base64url');
        tag[0]! ^= 0x80;
        p[4] = tag.toString('base64url');
        return p.join('.');
      },
      400,
      'JWE_DECRYPT_FAILED',
    ]);
    refusals.push([
      'inner payload not a JWS',
      async () => seal(enc, JSON.stringify(claimsFor(partner, gw.config.org, bundle()))),
      400,
      'JWS_MALFORMED',
    ]);
    refusals.push([
      'inner JWS of the wrong typ',
      async () => seal(enc, await signContent(partner, claimsFor(partner, gw.config.org, bundle()), { typ: 'JWT' })),
      400,
      'JWS_MALFORMED',
    ]);
    refusals.push([
      'bad signature (another key under the partner kid)',
      async () =>
        seal(
          enc,
          await signContent(partner, claimsFor(partner, gw.config.org, bundle()), {
            key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
          }),
        ),
      400,
      'JWS_SIGNATURE_INVALID',
    ]);
    refusals.push([
      'unknown sender',
      async () => {
        const stranger = await softPartner('https://stranger.test');
        return seal(enc, await signContent(stranger, claimsFor(stranger, gw.config.org, bundle())));
      },
      403,
      'UNKNOWN_SENDER',
    ]);
    refusals.push([
      'wrong aud',
      async () => seal(enc, await signed({ aud: 'https://someone-else.test' })),
      400,
      'WRONG_AUDIENCE',
    ]);
    refusals.push([
      'expired iat',
      async () => seal(enc, await signed({ iat: Math.floor(Date.now() / 1000) - 49 * 3600 })),
      400,
      'IAT_OUT_OF_WINDOW',
    ]);
    refusals.push([
      'future iat',
      async () => seal(enc, await signed({ iat: Math.floor(Date.now() / 1000) + 600 })),
      400,
      'IAT_OUT_OF_WINDOW',
    ]);
    refusals.push([
      'content not a Bundle',
      async () => seal(enc, await signed({ content: { resourceType: 'Patient' } })),
      400,
      'CLAIMS_INVALID',
    ]);

    // Content a partner signed is still held to the intake's JSON guards before it is stored and handed on.
    const signedText = (contentJson: string) => {
      const claims = claimsFor(partner, gw.config.org, null);
      const head = JSON.stringify({ ...claims, content: undefined }).slice(0, -1);
      return signContent(partner, claims, { payloadText: `${head},"content":${contentJson}}` });
    };
    refusals.push([
      'NUL in the signed iss',
      async () => seal(enc, await signed({ iss: `${partner.id}\u0000` })),
      403,
      'UNKNOWN_SENDER',
    ]);
    refusals.push([
      'NUL in the JWS kid',
      async () => {
        const [, payload, sig] = (await signed()).split('.');
        const header = Buffer.from(
          JSON.stringify({ alg: 'ES256', kid: `${partner.sigKid}\u0000`, typ: 'exchange+jwt' }),
        );
        return seal(enc, `${header.toString('base64url')}.${payload}.${sig}`);
      },
      400,
      'JWS_SIGNATURE_INVALID',
    ]);
    refusals.push([
      'an ES384 header over the P-256 key the kid names',
      async () => {
        const [, payload] = (await signed()).split('.');
        const header = Buffer.from(JSON.stringify({ alg: 'ES384', kid: partner.sigKid, typ: 'exchange+jwt' }));
        const forged = `${header.toString('base64url')}.${payload}.${Buffer.alloc(96, 7).toString('base64url')}`;
        return seal(enc, forged);
      },
      400,
      'JWS_SIGNATURE_INVALID',
    ]);
    refusals.push([
      'signed content with a __proto__ member',
      async () => {
        const b = JSON.stringify(bundle());
        return seal(enc, await signedText(`${b.slice(0, -1)},"__proto__":{"polluted":true}}`));
      },
      400,
      'CLAIMS_INVALID',
    ]);
    refusals.push([
      'signed content nested 100,000 levels deep',
      async () =>
        seal(
          enc,
          await signedText(
            `{"resourceType":"Bundle","type":"collection","x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`,
          ),
        ),
      400,
      'CLAIMS_INVALID',
    ]);

    // Members named twice: JSON.parse keeps the last, other readers the first; the strict reader refuses both.
    refusals.push([
      'a JWE protected header that names enc twice',
      async () =>
        seal(enc, await signed(), {}, (json) => json.replace('"enc":"A256GCM"', '"enc":"A256GCM","enc":"A256GCM"')),
      400,
      'JWE_MALFORMED',
    ]);
    refusals.push([
      'a JWE protected header that repeats kid as an escaped name',
      async () => seal(enc, await signed(), {}, (json) => json.replace('"kid":', '"kid":"other","\\u006bid":')),
      400,
      'JWE_MALFORMED',
    ]);
    refusals.push([
      'an inner JWS header that names typ twice',
      async () =>
        seal(
          enc,
          await signContent(partner, claimsFor(partner, gw.config.org, bundle()), {
            headerText: `{"alg":"ES256","kid":"${partner.sigKid}","typ":"JWT","typ":"exchange+jwt"}`,
          }),
        ),
      400,
      'JWS_MALFORMED',
    ]);
    refusals.push([
      'signed claims that name jti twice',
      async () => {
        const claims = claimsFor(partner, gw.config.org, bundle());
        const text = JSON.stringify(claims).replace('"jti":', `"jti":"${randomUUID()}","jti":`);
        return seal(enc, await signContent(partner, claims, { payloadText: text }));
      },
      400,
      'CLAIMS_INVALID',
    ]);
    refusals.push([
      'signed content whose Bundle names a member twice',
      async () => {
        const b = JSON.stringify(bundle());
        return seal(enc, await signedText(`${b.slice(0, -1)},"type":"message"}`));
      },
      400,
      'CLAIMS_INVALID',
    ]);
    refusals.push([
      'a NUL in the JWE kid',
      async () => seal(enc, await signed(), { kid: `${enc.kid}\u0000` }),
      400,
      'JWE_UNKNOWN_KID',
    ]);
    refusals.push([
      'a NUL in the signed exchange id',
      async () => seal(enc, await signed({ exchange: `${randomUUID()}\u0000` })),
      400,
      'CLAIMS_INVALID',
    ]);
    refusals.push([
      'a NUL in the signed jti',
      async () => seal(enc, await signed({ jti: `${randomUUID()}\u0000` })),
      400,
      'CLAIMS_INVALID',
    ]);
    refusals.push([
      'an over-long signed jti',
      async () => seal(enc, await signed({ jti: 'j'.repeat(5000) })),
      400,
      'CLAIMS_INVALID',
    ]);

    it.each(refusals)('%s: 4xx OperationOutcome, audited, nothing stored', async (_name, make, status, code) => {
      const envelope = await make();
      const before = await count('inbox_messages');
      const refusedBefore = await count('audit_log', `type = 'inbox.refused' AND entry LIKE $1`, [
        `%"reason":"${code}"%`,
      ]);
      const res = await post(envelope);
      expect(res.status).toBe(status);
      expect(res.headers.get('content-type')).toContain('application/fhir+json');
      const outcome = (await res.json()) as Outcome;
      expect(outcome.resourceType).toBe('OperationOutcome');
      expect(outcome.issue[0]!.details.coding[0]!.code).toBe(code);
      expect(await count('inbox_messages')).toBe(before);
      expect(await count('audit_log', `type = 'inbox.refused' AND entry LIKE $1`, [`%"reason":"${code}"%`])).toBe(
        refusedBefore + 1,
      );
    });

    it('a replayed jti with different content: 409, audited, the first message untouched', async () => {
      const claims = claimsFor(partner, gw.config.org, bundle());
      const first = seal(enc, await signContent(partner, claims));
      expect((await post(first)).status).toBe(200);
      const replay = seal(enc, await signContent(partner, { ...claims, content: bundle(2) }));
      const res = await post(replay);
      expect(res.status).toBe(409);
      expect(((await res.json()) as Outcome).issue[0]!.details.coding[0]!.code).toBe('REPLAY_CONFLICT');
      const { rows } = await gw.app.ctx.pool.query(
        `SELECT (SELECT e.envelope FROM inbox_envelopes e WHERE e.message_id = m.id) AS envelope FROM inbox_messages m WHERE jti = $1`,
        [claims.jti],
      );
      expect(rows.map((r) => r.envelope)).toEqual([first]);
      expect(
        await count('audit_log', `type = 'inbox.refused' AND entry LIKE $1`, [`%REPLAY_CONFLICT%${claims.jti}%`]),
      ).toBe(1);
    });

    it("under mutual TLS, an envelope signed by another partner than the certificate's is refused (SENDER_MISMATCH), the right one accepted", async () => {
      const { inboxReceiver } = await import('../../src/inbound/receive.ts');
      const receive = inboxReceiver(gw.app.ctx);
      const before = await count('inbox_messages');
      const envelope = seal(enc, await signContent(partner, claimsFor(partner, gw.config.org, bundle())));
      await expect(receive(envelope, { tlsPartner: 'https://some-other-partner.test' })).rejects.toMatchObject({
        code: 'SENDER_MISMATCH',
        status: 403,
      });
      expect(await count('inbox_messages')).toBe(before);
      expect(await count('audit_log', `type = 'inbox.refused' AND entry LIKE '%SENDER_MISMATCH%'`)).toBe(1);
      expect((await receive(envelope, { tlsPartner: partner.id })).duplicate).toBe(false);
      expect(await count('inbox_messages')).toBe(before + 1);
    });

    it('wrong content type: 415; oversize envelope: 413; neither stores anything', async () => {
      const before = await count('inbox_messages');
      const envelope = seal(enc, await signed());
      expect((await post(envelope, 'application/json')).status).toBe(400); // not JSON at all: refused by the JSON parser
      expect((await post(envelope, 'text/plain')).status).toBe(415);
      const big = seal(enc, await signContent(partner, claimsFor(partner, gw.config.org, bundle(4000))));
      expect(big.length).toBeGreaterThan(400000);
      const res = await post(big);
      expect(res.status).toBe(413);
      expect(((await res.json()) as Outcome).resourceType).toBe('OperationOutcome');
      expect(await count('inbox_messages')).toBe(before);
    });
  });
});

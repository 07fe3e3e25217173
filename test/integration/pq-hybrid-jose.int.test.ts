import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { compactVerify, generalVerify, importJWK } from 'jose';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Hsm, type PublicJwk } from '../../hsm/hsm.ts';
import { sealHybridCompact, openHybridCompactJwe, type HybridOpenOptions } from '../../src/jose/pq/hybrid-jwe.ts';
import { signDual, verifyDual } from '../../src/jose/pq/dual-jws.ts';
import { openCompactJwe, type DecryptionKey } from '../../src/jose/open.ts';
import { sealCompact } from '../../src/jose/seal.ts';
import { hsmSigner, type Signer } from '../../src/jose/signer.ts';
import { akpThumbprint } from '../../src/jose/thumbprint.ts';
import { createTestToken } from '../helpers/hsm.ts';
import { createPqPeer, peerVerifyDual } from '../helpers/pq-peer.ts';

/** Re-encode a compact JWE's protected header after `edit`; the rest is kept as it was. */
function editHeader(jwe: string, edit: (h: Record<string, unknown>) => void): string {
  const [p, ...rest] = jwe.split('.');
  const header = JSON.parse(Buffer.from(p!, 'base64url').toString('utf8')) as Record<string, unknown>;
  edit(header);
  return [Buffer.from(JSON.stringify(header)).toString('base64url'), ...rest].join('.');
}

const flip = (b64: string, at = 10) => {
  const b = Buffer.from(b64, 'base64url');
  b[at]! ^= 0x01;
  return b.toString('base64url');
};

describe('protocol v2 JOSE: hybrid ML-KEM envelopes and dual ML-DSA signatures, against an independent peer', () => {
  let hsm: Hsm;
  let ecKey: DecryptionKey;
  let ecJwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string; kid: string };
  let kemPrivate: KeyObject;
  let kemJwk: { kty: 'AKP'; alg: 'ML-KEM-768'; pub: string; kid: string };
  let signer: Signer;
  let sigJwk: PublicJwk;
  let dsa: { privateKey: KeyObject; jwk: { kty: 'AKP'; alg: 'ML-DSA-65'; pub: string; kid: string } };
  let options: HybridOpenOptions;
  const peer = createPqPeer();

  beforeAll(async () => {
    const token = createTestToken();
    hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 2 });
    const enc = await hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'derive', 'pq-test-enc');
    ecJwk = { ...(enc.publicJwk as { x: string; y: string }), kty: 'EC', crv: 'P-256', kid: 'gw-enc' };
    ecKey = { hsmId: enc.id, crv: 'P-256', kid: 'gw-enc' };
    const kem = generateKeyPairSync('ml-kem-768');
    kemPrivate = kem.privateKey;
    const pub = (kem.publicKey.export({ format: 'jwk' }) as { pub: string }).pub;
    kemJwk = { kty: 'AKP', alg: 'ML-KEM-768', pub, kid: akpThumbprint({ alg: 'ML-KEM-768', pub }) };
    const sig = await hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'sign', 'pq-test-sig');
    sigJwk = sig.publicJwk;
    signer = hsmSigner(hsm, sig.id, 'ES256', 'gw-sig');
    const d = generateKeyPairSync('ml-dsa-65');
    const dpub = (d.publicKey.export({ format: 'jwk' }) as { pub: string }).pub;
    dsa = {
      privateKey: d.privateKey,
      jwk: { kty: 'AKP', alg: 'ML-DSA-65', pub: dpub, kid: akpThumbprint({ alg: 'ML-DSA-65', pub: dpub }) },
    };
    options = {
      hsm,
      kdf: 'in-token',
      resolveKey: async (kid) => (kid === 'gw-enc' ? ecKey : undefined),
      resolveKemKey: async (kid) => (kid === kemJwk.kid ? kemPrivate : undefined),
    };
  });
  afterAll(() => hsm?.close());

  it('the independent peer opens what the gateway seals to its EC and ML-KEM keys', () => {
    const jwe = sealHybridCompact('{"resourceType":"Bundle"}', peer.jwks.ecEnc, peer.jwks.kemEnc);
    const opened = peer.open(jwe);
    expect(opened.plaintext).toBe('{"resourceType":"Bundle"}');
    expect(opened.header).toMatchObject({ alg: 'x-ECDH-ES+ML-KEM-768', kid: 'peer-enc', kem_kid: 'peer-kem' });
    expect(Buffer.from(opened.header.ek as string, 'base64url')).toHaveLength(1088);
  });

  it('the gateway opens what the peer seals, the KDF over Z || T running in the token (and in the extract fallback)', async () => {
    for (const kdf of ['in-token', 'extract'] as const) {
      const jwe = peer.seal(`from the peer, ${kdf}`, { ec: ecJwk, kem: kemJwk });
      const opened = await openHybridCompactJwe(jwe, { ...options, kdf });
      expect(opened.plaintext.toString()).toBe(`from the peer, ${kdf}`);
      expect(opened.kid).toBe('gw-enc');
    }
  });

  it('a sender that leaves T out of the KDF (only the ECDH part) is refused', async () => {
    const jwe = peer.seal('classical only', { ec: ecJwk, kem: kemJwk }, { omitT: true });
    await expect(openHybridCompactJwe(jwe, options)).rejects.toMatchObject({ code: 'JWE_DECRYPT_FAILED' });
  });

  it('a tampered ML-KEM ciphertext is refused', async () => {
    const jwe = peer.seal('kem tamper', { ec: ecJwk, kem: kemJwk });
    const tampered = editHeader(jwe, (h) => {
      h.ek = flip(h.ek as string, 500);
    });
    await expect(openHybridCompactJwe(tampered, options)).rejects.toMatchObject({ code: 'JWE_DECRYPT_FAILED' });
    const short = editHeader(jwe, (h) => {
      h.ek = (h.ek as string).slice(0, 100);
    });
    await expect(openHybridCompactJwe(short, options)).rejects.toMatchObject({ code: 'JWE_MALFORMED' });
  });

  it('a tampered ECDH part (another ephemeral key) is refused', async () => {
    const jwe = peer.seal('ecdh tamper', { ec: ecJwk, kem: kemJwk });
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
    const tampered = editHeader(jwe, (h) => {
      h.epk = { kty: 'EC', crv: 'P-256', x: other.x, y: other.y };
    });
    await expect(openHybridCompactJwe(tampered, options)).rejects.toMatchObject({ code: 'JWE_DECRYPT_FAILED' });
  });

  it('the two versions never cross: a v1 envelope is not opened as v2, nor a v2 header by the v1 reader', async () => {
    const v1 = sealCompact('v1', ecJwk);
    await expect(openHybridCompactJwe(v1, options)).rejects.toMatchObject({ code: 'JWE_UNSUPPORTED_ALG' });
    const v2 = sealHybridCompact('v2', ecJwk, kemJwk);
    await expect(openCompactJwe(v2, options)).rejects.toMatchObject({ code: 'JWE_UNSUPPORTED_ALG' });
    // Relabelled as v1, the ML-KEM members are refused rather than ignored.
    await expect(
      openCompactJwe(
        editHeader(v2, (h) => (h.alg = 'ECDH-ES')),
        options,
      ),
    ).rejects.toMatchObject({
      code: 'JWE_UNSUPPORTED_ALG',
    });
  });

  it('an unknown ML-KEM kid is refused, and sealing refuses a key that is not ML-KEM-768', async () => {
    const jwe = peer.seal('unknown', { ec: ecJwk, kem: { ...kemJwk, kid: 'nobody' } });
    await expect(openHybridCompactJwe(jwe, options)).rejects.toMatchObject({ code: 'JWE_UNKNOWN_KID' });
    expect(() => sealHybridCompact('x', ecJwk, { ...kemJwk, alg: 'ML-KEM-512' })).toThrow(/not an AKP ML-KEM-768/);
    expect(() => sealHybridCompact('x', ecJwk, { ...kemJwk, pub: kemJwk.pub.slice(0, 200) })).toThrow(/not a valid/);
  });

  it('the peer verifies both signatures the gateway makes (HSM ES256 and ML-DSA-65), and so does panva/jose', async () => {
    const jws = await signDual(signer, { kid: dsa.jwk.kid, privateKey: dsa.privateKey }, '{"status":"accepted"}', {
      typ: 'exchange-receipt+jwt',
    });
    expect(peerVerifyDual(jws, { ec: sigJwk as { x: string; y: string }, pq: dsa.jwk })).toEqual({
      ok: true,
      payload: '{"status":"accepted"}',
    });
    const doc = JSON.parse(jws) as Parameters<typeof generalVerify>[0];
    const pq = await generalVerify(doc, await importJWK(dsa.jwk, 'ML-DSA-65'));
    expect(pq.protectedHeader).toMatchObject({ alg: 'ML-DSA-65', kid: dsa.jwk.kid });
    const es = await generalVerify(doc, await importJWK({ ...sigJwk }, 'ES256'));
    expect(es.protectedHeader).toMatchObject({ alg: 'ES256' });
  });

  it('the gateway verifies what the peer dual-signs, and refuses either signature tampered or missing', async () => {
    const keys = {
      classical: async () => importJWK({ ...peer.jwks.ecSig }, 'ES256'),
      pq: async () => importJWK({ ...peer.jwks.pqSig }, 'ML-DSA-65'),
    };
    const jws = peer.signDual('{"hello":"v2"}', 'exchange+jwt');
    const ok = await verifyDual(jws, keys, { typ: 'exchange+jwt' });
    expect(Buffer.from(ok.payload).toString()).toBe('{"hello":"v2"}');
    await expect(verifyDual(jws, keys, { typ: 'exchange-receipt+jwt' })).rejects.toMatchObject({
      code: 'JWS_MALFORMED',
    });
    const doc = JSON.parse(jws) as { payload: string; signatures: { protected: string; signature: string }[] };
    for (const i of [0, 1]) {
      const bad = structuredClone(doc);
      bad.signatures[i]!.signature = flip(bad.signatures[i]!.signature);
      await expect(verifyDual(JSON.stringify(bad), keys)).rejects.toMatchObject({ code: 'JWS_SIGNATURE_INVALID' });
      const one = { ...doc, signatures: [doc.signatures[1 - i]!] };
      await expect(verifyDual(JSON.stringify(one), keys)).rejects.toMatchObject({ code: 'JWS_MALFORMED' });
    }
    const otherPayload = { ...doc, payload: Buffer.from('{"hello":"v3"}').toString('base64url') };
    await expect(verifyDual(JSON.stringify(otherPayload), keys)).rejects.toMatchObject({
      code: 'JWS_SIGNATURE_INVALID',
    });
  });

  it('RFC 9964 example: the ML-DSA-65 JWS verifies with jose and node:crypto, and the kid is our AKP thumbprint', async () => {
    const vector = JSON.parse(
      readFileSync(join(import.meta.dirname, '..', 'fixtures', 'rfc9964', 'ML_DSA_65.jose.json'), 'utf8'),
    ) as { jwk: { kid: string; pub: string; priv: string }; jws: string };
    const { kid, pub } = vector.jwk;
    expect(akpThumbprint({ alg: 'ML-DSA-65', pub })).toBe(kid);
    const key = await importJWK({ kty: 'AKP', alg: 'ML-DSA-65', pub }, 'ML-DSA-65');
    const verified = await compactVerify(vector.jws, key);
    expect(verified.protectedHeader).toEqual({ alg: 'ML-DSA-65', kid });
    expect(Buffer.from(verified.payload).toString()).toMatch(/dangerous business, Frodo/);
    const [h, , sig] = vector.jws.split('.');
    const forged = `${h}.${Buffer.from('another payload').toString('base64url')}.${sig}`;
    await expect(compactVerify(forged, key)).rejects.toThrow();
  });
});

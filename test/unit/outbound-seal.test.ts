import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compactDecrypt, compactVerify, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK } from 'jose';
import { concatKdf, sealCompact } from '../../src/jose/seal.ts';
import { claimsPayload, envelopeDigest } from '../../src/protocol/wire.ts';
import { contentBytes } from '../helpers/recipient.ts';

describe('sealCompact: compact JWE ECDH-ES + A256GCM with node:crypto', () => {
  for (const crv of ['P-256', 'P-384'] as const) {
    it(`is opened by jose compactDecrypt (${crv})`, async () => {
      const { publicKey, privateKey } = await generateKeyPair('ECDH-ES', { crv });
      const jwk = { ...(await exportJWK(publicKey)), kid: 'rk-1' };
      const plaintext = 'eyJhbGciOiJFUzI1NiJ9.eyJhIjoxfQ.c2ln';
      const jwe = sealCompact(plaintext, jwk as never);
      const header = decodeProtectedHeader(jwe);
      expect(Object.keys(header).sort()).toEqual(['alg', 'cty', 'enc', 'epk', 'kid']);
      expect(header).toMatchObject({
        alg: 'ECDH-ES',
        enc: 'A256GCM',
        kid: 'rk-1',
        cty: 'JWT',
        epk: { kty: 'EC', crv },
      });
      expect(jwe.split('.')[1]).toBe('');
      const out = await compactDecrypt(jwe, privateKey);
      expect(new TextDecoder().decode(out.plaintext)).toBe(plaintext);
      // Fresh ephemeral key and IV each time.
      expect(sealCompact(plaintext, jwk as never)).not.toBe(jwe);
    });
  }

  it('fails authentication when the ciphertext is altered', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ECDH-ES');
    const jwe = sealCompact('hello', { ...(await exportJWK(publicKey)), kid: 'k' } as never);
    const p = jwe.split('.');
    p[3] = (p[3]![0] === 'A' ? 'B' : 'A') + p[3]!.slice(1);
    await expect(compactDecrypt(p.join('.'), privateKey)).rejects.toThrow();
  });

  it('refuses keys it cannot seal to', () => {
    expect(() => sealCompact('x', { kty: 'RSA', kid: 'r' })).toThrow(/EC P-256\/P-384/);
    expect(() => sealCompact('x', { kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA', kid: 'bad' })).toThrow(
      /not a valid P-256/,
    );
  });

  it('derives the RFC 7518 Appendix C Concat KDF output', () => {
    const z = Buffer.from([
      158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110, 163, 218, 128, 106, 72,
      246, 218, 167, 121, 140, 254, 144, 196,
    ]);
    expect(concatKdf(z, 'A128GCM', 128, Buffer.from('Alice'), Buffer.from('Bob')).toString('base64url')).toBe(
      'VqqN6vgjbSBcIijNcacQGg',
    );
  });
});

describe('protocol v1 worked example (docs/PROTOCOL.md)', () => {
  const ex = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'protocol-v1-example.json'), 'utf8'));

  it('opens, verifies and recovers the exact bundle bytes', async () => {
    const { plaintext } = await compactDecrypt(ex.jwe, await importJWK(ex.recipEncPriv, 'ECDH-ES'));
    expect(new TextDecoder().decode(plaintext)).toBe(ex.jws);
    const { payload, protectedHeader } = await compactVerify(ex.jws, await importJWK(ex.senderSig, 'ES256'));
    expect(protectedHeader).toMatchObject({ alg: 'ES256', typ: 'exchange+jwt', kid: ex.senderSig.kid });
    const text = new TextDecoder().decode(payload);
    expect(text).toBe(ex.payload);
    expect(contentBytes(text)).toBe(ex.bundle);
    expect(envelopeDigest(ex.jwe)).toBe(ex.receiptClaims.digest);
    const receipt = await compactVerify(ex.receipt, await importJWK(ex.recipSig, 'ES256'));
    expect(JSON.parse(new TextDecoder().decode(receipt.payload))).toEqual(ex.receiptClaims);
  });

  it('appears verbatim in docs/PROTOCOL.md', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'PROTOCOL.md'), 'utf8');
    for (const v of [ex.jwe, ex.jws, ex.receipt, ex.payload]) expect(doc).toContain(v);
  });
});

describe('claimsPayload / contentBytes', () => {
  it('embeds the content verbatim, last, and recovers it', () => {
    const raw = '{\n  "resourceType" : "Bundle",  "note": "a \\"content\\": trap", "n": 1.50\n}';
    const p = claimsPayload(
      { iss: 'a"b', aud: 'c', iat: 1, jti: 'j', exchange: 'e', content_type: 'application/fhir+json' },
      raw,
    );
    expect(JSON.parse(p).content.n).toBe(1.5);
    expect(contentBytes(p)).toBe(raw);
  });
  it('falls back to re-serialising content for other layouts', () => {
    expect(contentBytes(JSON.stringify({ content: { a: 1 }, iss: 'x' }))).toBe('{"a":1}');
  });
});

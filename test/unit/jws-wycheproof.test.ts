/**
 * Wycheproof ecdsa_secp256r1_sha256_p1363 (C2SP/wycheproof, Apache-2.0, copied
 * with its LICENSE into test/fixtures/wycheproof/) against the ES256 check our
 * verifier relies on.
 *
 * What is covered, exactly:
 * A. A vector signs arbitrary `msg` bytes, but a JWS signature always covers
 *    ASCII(BASE64URL(header) '.' payload), so no JWS (compact, or RFC 7797
 *    b64=false, whose input still starts with the header) can make `msg` the
 *    signed bytes. Every vector therefore runs through the exact primitive
 *    that verifyCompact reaches via jose's compactVerify for ES256
 *    (jose 6 lib/jws_verify.js): crypto.subtle.verify({name:'ECDSA',
 *    hash:'SHA-256'}, key from jose importJWK(jwk,'ES256'), raw P1363
 *    signature, signed bytes), where a throw counts as a rejection, as in jose.
 *    valid -> accepted, invalid -> rejected, all 262 vectors.
 * B. Through verifyCompact itself, end to end: every vector's signature in a
 *    compact JWS (ES256 header, payload = msg, the vector's key) is rejected,
 *    because it signs msg, not the JWS signing input.
 * C. Through verifyCompact itself, the Wycheproof defect classes applied to a
 *    real ES256 JWS: r/s = 0, = n, + n, swapped, truncated, padded, DER, and the
 *    malleable (r, n - s), which ECDSA and RFC 7518 accept.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { importJWK, type JWK } from 'jose';
import { verifyCompact } from '../../src/jose/verify.ts';
import { signJson } from '../../src/jose/jws.ts';
import type { Signer } from '../../src/jose/signer.ts';

interface Vector {
  tcId: number;
  comment: string;
  flags: string[];
  msg: string;
  sig: string;
  result: 'valid' | 'invalid' | 'acceptable';
}
interface Group {
  publicKey: { wx: string; wy: string };
  publicKeyJwk?: JWK;
  tests: Vector[];
}
const file = JSON.parse(
  readFileSync(new URL('../fixtures/wycheproof/ecdsa_secp256r1_sha256_p1363_test.json', import.meta.url), 'utf8'),
) as {
  numberOfTests: number;
  testGroups: Group[];
};

/** wx/wy are big-endian integers that may carry a leading 00; JWK wants exactly 32 bytes. */
const coord = (hex: string) => {
  const b = Buffer.from(hex, 'hex');
  const trimmed = b.subarray(Math.max(0, b.length - 32));
  return Buffer.concat([Buffer.alloc(32 - trimmed.length), trimmed]).toString('base64url');
};
const jwkOf = (g: Group): JWK => ({ kty: 'EC', crv: 'P-256', x: coord(g.publicKey.wx), y: coord(g.publicKey.wy) });

/** The ES256 check inside jose's compactVerify, called the way jose calls it. */
async function es256Accepts(jwk: JWK, signedBytes: Uint8Array, signature: Uint8Array): Promise<boolean> {
  const key = (await importJWK(jwk, 'ES256')) as CryptoKey;
  try {
    return await crypto.subtle.verify(
      { name: 'ECDSA', hash: 'SHA-256' },
      key,
      signature as Uint8Array<ArrayBuffer>,
      signedBytes as Uint8Array<ArrayBuffer>,
    );
  } catch {
    return false;
  }
}

const b64u = (b: Uint8Array | string) => Buffer.from(b).toString('base64url');
const ES256_HEADER = b64u(JSON.stringify({ alg: 'ES256', typ: 'JWT' }));
const all = file.testGroups.flatMap((g) => g.tests.map((t) => ({ g, t })));

describe('Wycheproof ecdsa_secp256r1_sha256_p1363 against our ES256 verification', () => {
  it('the fixture is complete: every vector is here, none is "acceptable"', () => {
    expect(all.length).toBe(file.numberOfTests);
    expect(all.length).toBe(262);
    // "acceptable" would mean: either outcome is allowed, and we would record ours.
    // This file has none; if an update adds some, this test makes us decide.
    expect(all.filter(({ t }) => t.result === 'acceptable')).toEqual([]);
    for (const g of file.testGroups)
      if (g.publicKeyJwk) expect(jwkOf(g)).toMatchObject({ x: g.publicKeyJwk.x, y: g.publicKeyJwk.y });
  });

  it('A: valid vectors are accepted and invalid ones rejected by the primitive verifyCompact relies on (all 262)', async () => {
    const wrong: string[] = [];
    let accepted = 0;
    let rejected = 0;
    for (const { g, t } of all) {
      const ok = await es256Accepts(jwkOf(g), Buffer.from(t.msg, 'hex'), Buffer.from(t.sig, 'hex'));
      if (ok) accepted++;
      else rejected++;
      if (ok !== (t.result === 'valid')) wrong.push(`tcId ${t.tcId} (${t.result}, ${t.flags.join(',')}): ${t.comment}`);
    }
    expect(wrong).toEqual([]);
    expect({ accepted, rejected }).toEqual({ accepted: 173, rejected: 89 });
  });

  it('B: verifyCompact rejects every vector signature put in a JWS, since none signs the JWS signing input', async () => {
    const accepted: number[] = [];
    for (const { g, t } of all) {
      const jws = `${ES256_HEADER}.${b64u(Buffer.from(t.msg, 'hex'))}.${b64u(Buffer.from(t.sig, 'hex'))}`;
      const jwk = jwkOf(g);
      const outcome = await verifyCompact(jws, async () => jwk).then(
        () => 'accepted',
        (e: { code?: string }) => e.code,
      );
      if (outcome !== 'JWS_SIGNATURE_INVALID') accepted.push(t.tcId);
    }
    expect(accepted).toEqual([]);
  });
});

describe('Wycheproof defect classes applied to a real ES256 JWS, through verifyCompact', () => {
  const N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' }) as JWK;
  const signer = {
    alg: 'ES256',
    kid: 'unit',
    sign: async (data) => nodeSign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' }),
    signDigest: async () => {
      throw new Error('not used');
    },
  } satisfies Signer;

  const int = (b: Uint8Array) => BigInt(`0x${Buffer.from(b).toString('hex') || '0'}`);
  const bytes = (v: bigint, len = 32) => Buffer.from(v.toString(16).padStart(len * 2, '0'), 'hex');
  const der = (r: Buffer, s: Buffer) => {
    const i = (x: Buffer) => {
      let v = x;
      while (v.length > 1 && v[0] === 0 && v[1]! < 0x80) v = v.subarray(1);
      if (v[0]! >= 0x80) v = Buffer.concat([Buffer.from([0]), v]);
      return Buffer.concat([Buffer.from([0x02, v.length]), v]);
    };
    const body = Buffer.concat([i(r), i(s)]);
    return Buffer.concat([Buffer.from([0x30, body.length]), body]);
  };

  it('accepts the genuine and the malleable signature, rejects every defect', async () => {
    const jws = await signJson(signer, { resourceType: 'Bundle' });
    const [h, p, s64] = jws.split('.');
    const sig = Buffer.from(s64!, 'base64url');
    const r = sig.subarray(0, 32);
    const s = sig.subarray(32);
    const R = int(r);
    const S = int(s);
    const variants: Record<string, { sig: Buffer; valid: boolean }> = {
      genuine: { sig, valid: true },
      'malleable (r, n - s)': { sig: Buffer.concat([r, bytes(N - S)]), valid: true },
      'r = 0': { sig: Buffer.concat([bytes(0n), s]), valid: false },
      's = 0': { sig: Buffer.concat([r, bytes(0n)]), valid: false },
      'r = s = 0 (CVE-2022-21449)': { sig: Buffer.alloc(64), valid: false },
      'r = n': { sig: Buffer.concat([bytes(N), s]), valid: false },
      's = n': { sig: Buffer.concat([r, bytes(N)]), valid: false },
      'r + n (33 bytes)': { sig: Buffer.concat([bytes(R + N, 33), bytes(S, 33)]), valid: false },
      's + n, r padded': { sig: Buffer.concat([bytes(R, 33), bytes(S + N, 33)]), valid: false },
      'r and s swapped': { sig: Buffer.concat([s, r]), valid: false },
      'truncated to 63 bytes': { sig: sig.subarray(0, 63), valid: false },
      'one extra byte': { sig: Buffer.concat([sig, Buffer.from([0])]), valid: false },
      'DER instead of P1363': { sig: der(r, s), valid: false },
      'r = s = 1': { sig: Buffer.concat([bytes(1n), bytes(1n)]), valid: false },
      empty: { sig: Buffer.alloc(0), valid: false },
    };
    const outcomes: Record<string, boolean> = {};
    for (const [name, v] of Object.entries(variants)) {
      outcomes[name] = await verifyCompact(`${h}.${p}.${b64u(v.sig)}`, async () => jwk).then(
        () => true,
        () => false,
      );
    }
    expect(outcomes).toEqual(Object.fromEntries(Object.entries(variants).map(([n, v]) => [n, v.valid])));
  });
});

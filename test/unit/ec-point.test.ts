import { describe, expect, it } from 'vitest';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { isPointOnCurve } from '../../src/jose/ec-point.ts';
import type { EcCurve } from '../../src/jose/ec-point.ts';

/** OpenSSL's answer, the independent reference: whether it imports the coordinates as a public key. */
function opensslAccepts(crv: EcCurve, x: Buffer, y: Buffer): boolean {
  try {
    createPublicKey({ key: { kty: 'EC', crv, x: x.toString('base64url'), y: y.toString('base64url') }, format: 'jwk' });
    return true;
  } catch {
    return false;
  }
}

const SIZE: Record<EcCurve, number> = { 'P-256': 32, 'P-384': 48 };
const P: Record<EcCurve, bigint> = {
  'P-256': 2n ** 256n - 2n ** 224n + 2n ** 192n + 2n ** 96n - 1n,
  'P-384': 2n ** 384n - 2n ** 128n - 2n ** 96n + 2n ** 32n - 1n,
};
const bytesOf = (n: bigint, size: number) => Buffer.from(n.toString(16).padStart(size * 2, '0'), 'hex');
const valueOf = (b: Buffer) => BigInt(`0x${b.toString('hex')}`);

describe('isPointOnCurve: the epk validation, against OpenSSL', () => {
  for (const crv of ['P-256', 'P-384'] as const) {
    it(`${crv}: real public keys are on the curve; changed, random and out-of-range coordinates are not`, () => {
      const size = SIZE[crv];
      const cases: Array<[Buffer, Buffer]> = [];
      for (let i = 0; i < 40; i++) {
        const jwk = generateKeyPairSync('ec', { namedCurve: crv }).publicKey.export({ format: 'jwk' });
        const x = Buffer.from(jwk.x!, 'base64url');
        const y = Buffer.from(jwk.y!, 'base64url');
        cases.push([x, y]);
        cases.push([x, bytesOf((valueOf(y) + 1n) % P[crv], size)]); // off the curve
        cases.push([x, bytesOf(P[crv] - valueOf(y), size)]); // the point's negation: on the curve
        cases.push([randomBytes(size), randomBytes(size)]);
      }
      cases.push([Buffer.alloc(size), Buffer.alloc(size)]);
      cases.push([bytesOf(P[crv], size), Buffer.alloc(size)]);
      cases.push([Buffer.alloc(size, 0xff), Buffer.alloc(size, 0xff)]);
      // A valid point with its x moved up by p: the same value mod p, but not a field element.
      const jwk = generateKeyPairSync('ec', { namedCurve: crv }).publicKey.export({ format: 'jwk' });
      const x = valueOf(Buffer.from(jwk.x!, 'base64url'));
      const y = Buffer.from(jwk.y!, 'base64url');
      if (x + P[crv] < 2n ** BigInt(8 * size)) cases.push([bytesOf(x + P[crv], size), y]);
      expect(isPointOnCurve(crv, bytesOf(x + P[crv], size + 1), y)).toBe(false);
      expect(isPointOnCurve(crv, bytesOf(x, size), bytesOf(valueOf(y) + P[crv], size + 1))).toBe(false);
      expect(isPointOnCurve(crv, bytesOf(x, size), y)).toBe(true);

      const answers = cases.map(([cx, cy]) => isPointOnCurve(crv, cx, cy));
      expect(answers).toEqual(cases.map(([cx, cy]) => opensslAccepts(crv, cx, cy)));
      // Both kinds are present, so agreement is not agreement on one answer.
      expect(answers.filter(Boolean).length).toBeGreaterThanOrEqual(80);
      expect(answers.filter((a) => !a).length).toBeGreaterThanOrEqual(80);
    });
  }
});

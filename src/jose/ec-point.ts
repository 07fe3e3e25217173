/** The curves of the protocol's key agreement. */
export type EcCurve = 'P-256' | 'P-384';

/** The short Weierstrass curves y² = x³ − 3x + b over GF(p) (SEC 2, FIPS 186-5): their p and b. */
const CURVES: Record<EcCurve, { p: bigint; b: bigint }> = {
  'P-256': {
    p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
    b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
  },
  'P-384': {
    p: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffffn,
    b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn,
  },
};

const toBigInt = (bytes: Buffer): bigint => BigInt(`0x${bytes.toString('hex') || '0'}`);

/**
 * Whether the affine coordinates (big-endian, any length) are a point of the
 * curve: each below p and satisfying the curve's equation. Both curves have
 * cofactor 1, so such a point is in the prime-order group and this is the
 * whole public-key validation of NIST SP 800-56A §5.6.2.3 (the point at
 * infinity has no affine coordinates). It replaces a key import, which also
 * multiplies the point by the group order, for every received envelope.
 */
export function isPointOnCurve(crv: EcCurve, x: Buffer, y: Buffer): boolean {
  const { p, b } = CURVES[crv];
  const X = toBigInt(x);
  const Y = toBigInt(y);
  if (X >= p || Y >= p) return false;
  return (Y * Y - (X * X * X - 3n * X + b)) % p === 0n;
}

import { createHash } from 'node:crypto';
import type { PublicJwk } from '../../hsm/hsm.ts';

/** RFC 7638 JWK thumbprint (SHA-256), used as every key's kid. */
export function thumbprint(jwk: PublicJwk): string {
  const members =
    jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : { e: jwk.e, kty: jwk.kty, n: jwk.n };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

/** RFC 7638 thumbprint of an RFC 9964 `AKP` key (ML-DSA, and ML-KEM alike): required members alg, kty, pub. */
export function akpThumbprint(jwk: { alg: string; pub: string }): string {
  return createHash('sha256')
    .update(JSON.stringify({ alg: jwk.alg, kty: 'AKP', pub: jwk.pub }))
    .digest('base64url');
}

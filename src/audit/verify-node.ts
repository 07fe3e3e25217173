import { createHash, createPublicKey, verify } from 'node:crypto';
import type { VerifyDeps } from './verifier/verify.ts';

/** node:crypto implementations of the verifier's primitives (CLI, server, tests). */
export const nodeVerifyDeps: VerifyDeps = {
  sha256: (data) => createHash('sha256').update(data).digest(),
  verifySignature: (jwk, data, der) => {
    try {
      const key = createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, format: 'jwk' });
      return verify('sha256', data, { key, dsaEncoding: 'der' }, der);
    } catch {
      return false;
    }
  },
};

import type { Hsm, SignAlg } from '../../hsm/hsm.ts';
import { digest } from '../../hsm/sign.ts';

/**
 * The narrow interface JOSE code signs through. It never sees a PKCS#11
 * session, a PIN or a key handle.
 */
export interface Signer {
  readonly alg: SignAlg;
  readonly kid: string;
  /** Sign bytes (hashed in software with the algorithm's hash). */
  sign(data: Uint8Array): Promise<Uint8Array>;
  /** Sign a digest computed elsewhere, e.g. over a stream. */
  signDigest(hash: Buffer): Promise<Uint8Array>;
}

export const HASH_OF: Record<SignAlg, 'sha256' | 'sha384'> = { ES256: 'sha256', ES384: 'sha384', PS256: 'sha256' };

export function hsmSigner(hsm: Hsm, hsmId: string, alg: SignAlg, kid: string): Signer {
  return {
    alg,
    kid,
    sign: (data) => hsm.signDigest(hsmId, alg, digest(alg, data)),
    signDigest: (hash) => hsm.signDigest(hsmId, alg, hash),
  };
}

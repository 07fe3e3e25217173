import { createHash } from 'node:crypto';
import { pkcs11js, type Pkcs11 } from './module.ts';
import { HsmError } from './errors.ts';

export type SignAlg = 'ES256' | 'ES384' | 'PS256';

const HASH: Record<SignAlg, { name: string; bytes: number }> = {
  ES256: { name: 'sha256', bytes: 32 },
  ES384: { name: 'sha384', bytes: 48 },
  PS256: { name: 'sha256', bytes: 32 },
};

export function hashFor(alg: SignAlg): string {
  return HASH[alg].name;
}

export function digest(alg: SignAlg, data: Uint8Array): Buffer {
  return createHash(HASH[alg].name).update(data).digest();
}

/** Largest signature each algorithm can produce, for the output buffer. */
const MAX_SIG: Record<SignAlg, number> = { ES256: 64, ES384: 96, PS256: 512 };

/**
 * Sign a precomputed digest. SoftHSM offers CKM_ECDSA only (no hashing EC
 * mechanisms), and hashing in software is faster anyway. ECDSA returns raw
 * r||s, which is exactly the JWS form.
 */
export function signDigest(p11: Pkcs11, session: Buffer, key: Buffer, alg: SignAlg, hash: Buffer): Promise<Buffer> {
  // Throws synchronously on bad input: callers run it inside the pool's try.
  if (hash.length !== HASH[alg].bytes)
    throw new HsmError('HSM_OPERATION_FAILED', `digest for ${alg} must be ${HASH[alg].bytes} bytes`);
  const mechanism =
    alg === 'PS256'
      ? {
          mechanism: pkcs11js.CKM_RSA_PKCS_PSS,
          parameter: {
            type: pkcs11js.CK_PARAMS_RSA_PSS,
            hashAlg: pkcs11js.CKM_SHA256,
            mgf: pkcs11js.CKG_MGF1_SHA256,
            saltLen: 32,
          },
        }
      : { mechanism: pkcs11js.CKM_ECDSA };
  p11.C_SignInit(session, mechanism, key);
  // The async form runs in the libuv pool, so N sessions sign on N threads.
  return p11.C_SignAsync(session, hash, Buffer.alloc(MAX_SIG[alg]));
}

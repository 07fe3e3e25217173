import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { Hsm } from '../../hsm/hsm.ts';
import { GatewayError } from '../errors.ts';
import { akpThumbprint } from '../jose/thumbprint.ts';

/**
 * The post-quantum key pairs of protocol v2, while the token has no ML-KEM or
 * ML-DSA mechanisms: generated in software, kept only as the FIPS 203/204
 * seed wrapped by an HSM AES key, and unwrapped into memory per process.
 */
export type PqAlg = 'ML-KEM-768' | 'ML-DSA-65';

/** The seed lengths: ML-KEM d ‖ z (FIPS 203), ML-DSA ξ (FIPS 204). */
const SEED_BYTES: Record<PqAlg, number> = { 'ML-KEM-768': 64, 'ML-DSA-65': 32 };
const USE: Record<PqAlg, 'enc' | 'sig'> = { 'ML-KEM-768': 'enc', 'ML-DSA-65': 'sig' };

export interface WrappedPqKey {
  alg: PqAlg;
  /** RFC 7638 thumbprint of the AKP public key. */
  kid: string;
  /** The public key, base64url (the JWK's `pub`). */
  pub: string;
  /** The seed, wrapped (RFC 5649) by the token key `wrappingKeyId`. */
  wrapped: Buffer;
  wrappingKeyId: string;
}

export interface AkpPublicJwk {
  kty: 'AKP';
  alg: PqAlg;
  pub: string;
  kid: string;
  use: 'enc' | 'sig';
}

export async function generateWrappedPqKey(hsm: Pick<Hsm, 'wrapSecret'>, wrappingKeyId: string, alg: PqAlg) {
  const { publicKey, privateKey } =
    alg === 'ML-KEM-768' ? generateKeyPairSync('ml-kem-768') : generateKeyPairSync('ml-dsa-65');
  const { pub } = publicKey.export({ format: 'jwk' }) as { pub: string };
  const seed = Buffer.from((privateKey.export({ format: 'jwk' }) as { priv: string }).priv, 'base64url');
  try {
    const wrapped = await hsm.wrapSecret(wrappingKeyId, seed);
    return { alg, kid: akpThumbprint({ alg, pub }), pub, wrapped, wrappingKeyId } satisfies WrappedPqKey;
  } finally {
    seed.fill(0);
  }
}

/** The private key in memory. Refused if the seed does not give the recorded public key. */
export async function unwrapPqKey(hsm: Pick<Hsm, 'unwrapSecret'>, key: WrappedPqKey): Promise<KeyObject> {
  const seed = await hsm.unwrapSecret(key.wrappingKeyId, key.wrapped, SEED_BYTES[key.alg]);
  try {
    // node:crypto refuses a seed that does not give this public key.
    return createPrivateKey({
      key: { kty: 'AKP', alg: key.alg, pub: key.pub, priv: seed.toString('base64url') } as never,
      format: 'jwk',
    });
  } catch (err) {
    throw new GatewayError('INTERNAL', `post-quantum key ${key.kid}: the unwrapped seed is not this key's`, {
      cause: err,
    });
  } finally {
    seed.fill(0);
  }
}

/** The JWKS entry (RFC 9964 §2): public members only. */
export function akpPublicJwk(key: Pick<WrappedPqKey, 'alg' | 'pub' | 'kid'>): AkpPublicJwk {
  return { kty: 'AKP', alg: key.alg, pub: key.pub, kid: key.kid, use: USE[key.alg] };
}

import {
  compactVerify,
  flattenedVerify,
  decodeProtectedHeader,
  errors,
  type JWK,
  type CryptoKey,
  type KeyObject,
} from 'jose';
import { verify, type KeyObject as NodeKeyObject } from 'node:crypto';
import { GatewayError } from '../errors.ts';
import { fromB64u } from './base64url.ts';
import { duplicateMember } from './duplicate-members.ts';

/** Only these algorithms are ever accepted; never "none", never HMAC with a public key. */
export const SIGNATURE_ALGS = ['ES256', 'ES384', 'PS256'] as const;

export type KeyResolver = (header: { alg?: string; kid?: string }) => Promise<JWK | CryptoKey | KeyObject | Uint8Array>;

export interface VerifiedJws {
  header: Record<string, unknown>;
  payload: Uint8Array;
}

/** Verify a compact JWS with an explicit algorithm allowlist and, optionally, an expected typ. */
export async function verifyCompact(
  jws: string,
  key: KeyResolver,
  options: { typ?: string; algorithms?: readonly string[] } = {},
): Promise<VerifiedJws> {
  const algorithms = [...(options.algorithms ?? SIGNATURE_ALGS)];
  let header: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(jws) as Record<string, unknown>;
  } catch (err) {
    throw new GatewayError('JWS_MALFORMED', 'not a JWS: the protected header cannot be decoded', { cause: err });
  }
  refuseRepeatedHeaderMember(jws);
  if (options.typ !== undefined && header.typ !== options.typ) {
    throw new GatewayError(
      'JWS_MALFORMED',
      `unexpected JWS typ ${JSON.stringify(header.typ)}; expected ${options.typ}`,
    );
  }
  try {
    const result = await compactVerify(jws, key, { algorithms });
    return { header: result.protectedHeader as Record<string, unknown>, payload: result.payload };
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    if (err instanceof errors.JOSEError) throw joseRefusal(err);
    throw err;
  }
}

/** jose reads the header last-wins; a header with a member twice is refused before it is trusted. */
function refuseRepeatedHeaderMember(jws: string): void {
  const repeated = duplicateMember(fromB64u(jws.slice(0, jws.indexOf('.'))).toString('utf8'));
  if (repeated !== undefined)
    throw new GatewayError('JWS_MALFORMED', `the JWS header repeats the member ${JSON.stringify(repeated)}`);
}

/** A JWS the jose library refuses: malformed structure, or a signature that does not verify. */
function joseRefusal(err: InstanceType<typeof errors.JOSEError>): GatewayError {
  const code = err instanceof errors.JWSInvalid ? 'JWS_MALFORMED' : 'JWS_SIGNATURE_INVALID';
  return new GatewayError(code, `signature rejected: ${err.code}`, { cause: err });
}

/** Verify an RFC 7797 detached, unencoded-payload JWS ("header..signature") against the content bytes. */
export async function verifyDetached(
  jws: string,
  content: Uint8Array,
  key: KeyResolver,
  algorithms: readonly string[] = SIGNATURE_ALGS,
): Promise<Record<string, unknown>> {
  const parts = jws.split('.');
  const [protectedB64, payloadB64, signature] = parts;
  if (parts.length !== 3 || payloadB64 !== '' || protectedB64 === undefined || signature === undefined)
    throw new GatewayError('JWS_MALFORMED', 'not a detached JWS');
  refuseRepeatedHeaderMember(jws);
  try {
    const result = await flattenedVerify({ protected: protectedB64, payload: content, signature }, key, {
      algorithms: [...algorithms],
    });
    return result.protectedHeader as Record<string, unknown>;
  } catch (err) {
    if (err instanceof errors.JOSEError) throw joseRefusal(err);
    throw err;
  }
}

/**
 * The ECDSA algorithms of partner content: each one's hash, its signature's length (r ‖ s, RFC 7518 §3.4)
 * and its curve, as a JWK names it (crv) and as node:crypto does.
 */
const ECDSA = {
  ES256: { hash: 'sha256', bytes: 64, crv: 'P-256', curve: 'prime256v1' },
  ES384: { hash: 'sha384', bytes: 96, crv: 'P-384', curve: 'secp384r1' },
} as const;

export type EcdsaAlg = keyof typeof ECDSA;

/** The JWK curve (crv) an ECDSA algorithm signs with. */
export const ecdsaCurve = (alg: EcdsaAlg): string => ECDSA[alg].crv;

/**
 * Whether an ES256 or ES384 signature (the raw r ‖ s of RFC 7518 §3.4) verifies over a compact JWS's
 * signing input (its header and payload segments as sent) with an EC key of that algorithm's curve; any
 * other key answers false. For a JWS already split and checked by its caller: one synchronous
 * node:crypto call, where jose would decode it again and verify through Web Crypto on the thread pool.
 */
export function ecdsaSignatureVerifies(
  alg: EcdsaAlg,
  signingInput: string,
  signature: Buffer,
  key: NodeKeyObject,
): boolean {
  const { hash, bytes, curve } = ECDSA[alg];
  if (signature.length !== bytes || key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== curve)
    return false;
  return verify(hash, Buffer.from(signingInput, 'ascii'), { key, dsaEncoding: 'ieee-p1363' }, signature);
}

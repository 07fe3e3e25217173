import { importPublicJwk } from '../jose/public-key.ts';
import { GatewayError } from '../errors.ts';

/** A public JWK as published by a partner (only the members we read). */
export interface PartnerJwk {
  kty: string;
  crv?: string;
  x?: string;
  y?: string;
  kid?: string;
  use?: string;
  alg?: string;
  d?: string;
  [member: string]: unknown;
}

export interface Jwks {
  keys: PartnerJwk[];
}

const COORD_BYTES: Record<string, number> = { 'P-256': 32, 'P-384': 48 };
const SIG_ALG_OF_CURVE: Record<string, string> = { 'P-256': 'ES256', 'P-384': 'ES384' };

/** Structural check of a JWKS document: an object with a bounded keys array, no private members. */
export function checkJwks(doc: unknown, maxKeys: number, where: string): Jwks {
  if (!doc || typeof doc !== 'object' || !Array.isArray((doc as Jwks).keys)) {
    throw new GatewayError('INVALID_VALUE', `${where} is not a JWKS: expected an object with a "keys" array`);
  }
  const keys = (doc as Jwks).keys;
  if (keys.length > maxKeys)
    throw new GatewayError('INVALID_VALUE', `${where} holds ${keys.length} keys; at most ${maxKeys} are accepted`);
  keys.forEach((k, i) => {
    if (!k || typeof k !== 'object' || typeof k.kty !== 'string')
      throw new GatewayError('INVALID_VALUE', `${where} keys[${i}] is not a JWK (no kty)`);
    // `priv` is the private member of an RFC 9964 AKP key.
    if ('d' in k || 'p' in k || 'k' in k || 'priv' in k)
      throw new GatewayError(
        'INVALID_VALUE',
        `${where} keys[${i}] contains private key material; publish public keys only`,
      );
  });
  return { keys };
}

/** An EC key on P-256/P-384 whose point is valid; throws a message that names the problem. */
function checkEcPoint(k: PartnerJwk, label: string): void {
  if (k.kty !== 'EC')
    throw new GatewayError(
      'UNPROCESSABLE',
      `${label} has kty ${JSON.stringify(k.kty)}; only EC keys on P-256 or P-384 are accepted`,
    );
  const size = COORD_BYTES[k.crv ?? ''];
  if (!size)
    throw new GatewayError(
      'UNPROCESSABLE',
      `${label} uses curve ${JSON.stringify(k.crv)}; only P-256 and P-384 are accepted`,
    );
  for (const c of ['x', 'y'] as const) {
    const v = k[c];
    if (typeof v !== 'string' || !/^[A-Za-z0-9_-]+$/.test(v) || Buffer.from(v, 'base64url').length !== size) {
      throw new GatewayError('UNPROCESSABLE', `${label} has an invalid "${c}" coordinate for ${k.crv}`);
    }
  }
  try {
    importPublicJwk({ kty: 'EC', crv: k.crv, x: k.x, y: k.y });
  } catch {
    throw new GatewayError('UNPROCESSABLE', `${label} is not a point on ${k.crv}`);
  }
}

/**
 * The partner's current encryption key: the first non-AKP key with use
 * "enc" (alg ECDH-ES or none). Publishers list their current key first. A listed enc
 * key that is weak or malformed is refused rather than skipped, so a
 * misconfiguration surfaces instead of silently sealing to another key.
 */
export function selectEncryptionKey(jwks: Jwks, partnerId: string): PartnerJwk & { kid: string } {
  // A v2 partner's ML-KEM key (AKP) sits beside its EC key; it is the second half of v2, never the v1 key.
  const key = jwks.keys.find((k) => k.use === 'enc' && k.kty !== 'AKP');
  if (!key)
    throw new GatewayError(
      'UNPROCESSABLE',
      `partner ${partnerId} publishes no encryption key (use "enc", alg ECDH-ES)`,
    );
  const label = `encryption key ${key.kid ?? '(no kid)'} of partner ${partnerId}`;
  if (key.alg !== undefined && key.alg !== 'ECDH-ES')
    throw new GatewayError(
      'UNPROCESSABLE',
      `${label} has alg ${JSON.stringify(key.alg)}; only ECDH-ES (or no alg) is accepted`,
    );
  checkEcPoint(key, label);
  if (typeof key.kid !== 'string' || key.kid === '')
    throw new GatewayError('UNPROCESSABLE', `${label} has no kid; the envelope header must name the recipient key`);
  return key as PartnerJwk & { kid: string };
}

/** An RFC 9964 ML-DSA-65 public key that node:crypto accepts. */
function checkMlDsaKey(k: PartnerJwk, label: string): void {
  if (k.alg !== 'ML-DSA-65' || typeof k.pub !== 'string')
    throw new GatewayError('UNPROCESSABLE', `${label} is an AKP key but not an ML-DSA-65 public key`);
  try {
    importPublicJwk({ kty: 'AKP', alg: k.alg, pub: k.pub });
  } catch {
    throw new GatewayError('UNPROCESSABLE', `${label} is not a valid ML-DSA-65 public key`);
  }
}

/** The partner's signing key with this kid, or undefined if none is listed. Throws if listed but unusable. */
export function selectVerificationKey(jwks: Jwks, partnerId: string, kid: string): PartnerJwk | undefined {
  const key = jwks.keys.find((k) => k.kid === kid && k.use !== 'enc');
  if (!key) return undefined;
  const label = `signing key ${kid} of partner ${partnerId}`;
  if (key.use !== undefined && key.use !== 'sig')
    throw new GatewayError('UNPROCESSABLE', `${label} has use ${JSON.stringify(key.use)}; expected "sig"`);
  // The ML-DSA half of a v2 partner's signatures (PROTOCOL §14.3).
  if (key.kty === 'AKP') {
    checkMlDsaKey(key, label);
    return key;
  }
  checkEcPoint(key, label);
  const expected = SIG_ALG_OF_CURVE[key.crv ?? ''];
  if (key.alg !== undefined && key.alg !== expected)
    throw new GatewayError(
      'UNPROCESSABLE',
      `${label} has alg ${JSON.stringify(key.alg)} on ${key.crv}; expected ${expected}`,
    );
  return key;
}

import { createPublicKey, type KeyObject } from 'node:crypto';
import { GatewayError } from '../errors.ts';
import { fromB64u } from '../jose/base64url.ts';
import { isCanonicalB64u } from '../jose/jwe-header.ts';
import { verifyCompact } from '../jose/verify.ts';
import type { Directory, PartnerJwk } from '../directory/directory.ts';
import { PROTOCOL, type ExchangeClaims } from './wire.ts';

/** Signature algorithms a sender may use: ES256 (protocol default) and ES384 for P-384 keys. */
export const CONTENT_ALGS = ['ES256', 'ES384'] as const;

export interface VerifiedContent {
  claims: ExchangeClaims;
  /** The verified JWS payload text (the claims JSON exactly as signed). */
  payloadText: string;
  senderKid: string;
  /** The sender's public key that verified the signature (kept to re-verify on read). */
  senderJwk: PartnerJwk;
}

export interface ContentChecks {
  directory: Pick<Directory, 'get' | 'verificationKey'>;
  /** Our organisation id: the only acceptable aud. */
  org: string;
  /** Accepted clock difference: iat may be at most this far in the future. */
  clockSkewMs: number;
  /** Oldest iat accepted: envelopes are signed once and retried, so this exceeds the senders' delivery horizon. */
  maxAgeMs: number;
  now?: number;
  /** Checks content_type and content instead of the Bundle rules (imaging manifests, issue 6). */
  checkContent?: (claims: Record<string, unknown>) => void;
}

/** Parsed sender keys by JWK text: importing a JWK costs more than the verification itself. */
const keyCache = new Map<string, KeyObject>();
export function publicKeyOf(jwk: PartnerJwk): KeyObject {
  const text = JSON.stringify({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y });
  let key = keyCache.get(text);
  if (!key) {
    key = createPublicKey({ key: JSON.parse(text), format: 'jwk' });
    if (keyCache.size >= 1000) keyCache.delete(keyCache.keys().next().value!);
    keyCache.set(text, key);
  }
  return key;
}

const jwsMalformed = (message: string) => new GatewayError('JWS_MALFORMED', message);

/** Split and decode a compact JWS without trusting it: header and (unverified) payload JSON. */
function decodeJws(jws: string): { header: Record<string, unknown>; payloadText: string } {
  const parts = jws.split('.');
  if (parts.length !== 3 || parts.some((p) => !isCanonicalB64u(p)) || parts[0] === '' || parts[2] === '')
    throw jwsMalformed('the envelope does not hold a compact JWS');
  let header: unknown;
  try {
    header = JSON.parse(fromB64u(parts[0]!).toString('utf8'));
  } catch {
    throw jwsMalformed('the JWS header is not JSON');
  }
  if (!header || typeof header !== 'object' || Array.isArray(header))
    throw jwsMalformed('the JWS header is not an object');
  return { header: header as Record<string, unknown>, payloadText: fromB64u(parts[1]!).toString('utf8') };
}

function parseClaims(text: string): Record<string, unknown> {
  let claims: unknown;
  try {
    claims = JSON.parse(text);
  } catch {
    throw new GatewayError('CLAIMS_INVALID', 'the signed payload is not JSON');
  }
  if (!claims || typeof claims !== 'object' || Array.isArray(claims))
    throw new GatewayError('CLAIMS_INVALID', 'the signed payload is not a JSON object');
  return claims as Record<string, unknown>;
}

/** Read the claimed sender before verification: it only selects which key to try. */
export function claimedSender(jws: string): string | undefined {
  try {
    const iss = parseClaims(decodeJws(jws).payloadText).iss;
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Verify the signed content: typ and algorithm allowlist, a sender in the
 * directory, its published key, then aud, iat window and claim shapes.
 */
export async function verifySignedContent(jws: string, checks: ContentChecks): Promise<VerifiedContent> {
  const { header, payloadText } = decodeJws(jws);
  if (header.typ !== PROTOCOL.contentTyp)
    throw jwsMalformed(`JWS typ ${JSON.stringify(header.typ)} is not ${PROTOCOL.contentTyp}`);
  if (!(CONTENT_ALGS as readonly unknown[]).includes(header.alg))
    throw new GatewayError('JWS_SIGNATURE_INVALID', `JWS alg ${JSON.stringify(header.alg)} is not accepted`);
  if (typeof header.kid !== 'string' || header.kid === '') throw jwsMalformed('the JWS header names no kid');
  if ('crit' in header) throw jwsMalformed('JWS crit is not accepted');
  const unverified = parseClaims(payloadText);
  const iss = unverified.iss;
  if (typeof iss !== 'string' || iss === '')
    throw new GatewayError('CLAIMS_INVALID', 'iss is missing', { expression: 'iss' });
  const partner = await checks.directory.get(iss);
  if (!partner)
    throw new GatewayError('UNKNOWN_SENDER', `sender ${iss} is not in this gateway's directory`, { expression: 'iss' });
  if (partner.status !== 'active')
    throw new GatewayError('UNKNOWN_SENDER', `sender ${iss} is suspended`, { expression: 'iss' });
  const kid = header.kid;
  let senderJwk: PartnerJwk;
  try {
    senderJwk = await checks.directory.verificationKey(iss, kid, 'current');
  } catch (err) {
    // No such key published: the signature cannot be from this sender. JWKS fetch trouble (503) stays transient.
    if (err instanceof GatewayError && (err.code === 'FORBIDDEN' || err.code === 'UNPROCESSABLE')) {
      throw new GatewayError('JWS_SIGNATURE_INVALID', `sender ${iss} publishes no usable signing key ${kid}`, {
        cause: err,
      });
    }
    throw err;
  }
  try {
    await verifyCompact(jws, async () => publicKeyOf(senderJwk), {
      typ: PROTOCOL.contentTyp,
      algorithms: CONTENT_ALGS,
    });
  } catch (err) {
    if (err instanceof GatewayError)
      throw new GatewayError('JWS_SIGNATURE_INVALID', `the signature of ${iss} does not verify`, { cause: err });
    throw err;
  }
  return { claims: checkClaims(unverified, checks), payloadText, senderKid: kid, senderJwk };
}

const UUIDISH = /^[A-Za-z0-9._:-]{1,128}$/;

function checkClaims(c: Record<string, unknown>, checks: ContentChecks): ExchangeClaims {
  if (c.aud !== checks.org)
    throw new GatewayError('WRONG_AUDIENCE', `aud ${JSON.stringify(c.aud)} is not this gateway (${checks.org})`, {
      expression: 'aud',
    });
  if (typeof c.iat !== 'number' || !Number.isFinite(c.iat))
    throw new GatewayError('CLAIMS_INVALID', 'iat must be a number', { expression: 'iat' });
  const now = checks.now ?? Date.now();
  if (c.iat * 1000 > now + checks.clockSkewMs)
    throw new GatewayError('IAT_OUT_OF_WINDOW', 'iat is in the future beyond the accepted clock skew', {
      expression: 'iat',
    });
  if (c.iat * 1000 < now - checks.maxAgeMs - checks.clockSkewMs)
    throw new GatewayError('IAT_OUT_OF_WINDOW', 'iat is older than the accepted window (expired)', {
      expression: 'iat',
    });
  if (typeof c.jti !== 'string' || !UUIDISH.test(c.jti))
    throw new GatewayError('CLAIMS_INVALID', 'jti must be an identifier (a UUID)', { expression: 'jti' });
  if (typeof c.exchange !== 'string' || !UUIDISH.test(c.exchange))
    throw new GatewayError('CLAIMS_INVALID', 'exchange must be an identifier', { expression: 'exchange' });
  if (checks.checkContent) {
    checks.checkContent(c);
    return c as unknown as ExchangeClaims;
  }
  if (c.content_type !== PROTOCOL.fhirContentType)
    throw new GatewayError('CLAIMS_INVALID', `content_type must be ${PROTOCOL.fhirContentType}`, {
      expression: 'content_type',
    });
  const content = c.content as { resourceType?: unknown } | null;
  if (!content || typeof content !== 'object' || content.resourceType !== 'Bundle')
    throw new GatewayError('CLAIMS_INVALID', 'content must be a FHIR Bundle', { expression: 'content' });
  return c as unknown as ExchangeClaims;
}

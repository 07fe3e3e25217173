import type { KeyObject } from 'node:crypto';
import { GatewayError } from '../errors.ts';
import { parseFhirJson } from '../fhir/json.ts';
import { canonicalB64uBytes } from '../jose/base64url.ts';
import { duplicateMember } from '../jose/duplicate-members.ts';
import { importPublicJwk } from '../jose/public-key.ts';
import { ecdsaCurve, ecdsaSignatureVerifies, type EcdsaAlg } from '../jose/verify.ts';
import type { Directory, Partner, PartnerJwk } from '../directory/directory.ts';

/** Signature algorithms a sender may use: ES256 (protocol default) and ES384 for P-384 keys. */
export const CONTENT_ALGS = ['ES256', 'ES384'] as const satisfies readonly EcdsaAlg[];

export function publicKeyOf(jwk: PartnerJwk): KeyObject {
  return importPublicJwk({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y });
}

/** How a partner's signed JWS is checked: its typ, and where a refusal points (FHIRPath of the part). */
export interface SignedJwsChecks {
  directory: Pick<Directory, 'sender' | 'verificationKey'>;
  typ: string;
  /** What the JWS is, for messages ("the envelope", "the imaging announcement"). */
  what: string;
  expression?: string;
  /** Deepest JSON nesting of the claims (the receiver's JSON_MAX_DEPTH, plus the claims object). */
  maxDepth?: number;
}

export interface VerifiedJwsSender {
  /** The signed claims object (not yet checked beyond iss). */
  claims: Record<string, unknown>;
  /** The verified JWS payload text (the claims JSON exactly as signed). */
  payloadText: string;
  iss: string;
  senderKid: string;
  /** The sender's public key that verified the signature. */
  senderJwk: PartnerJwk;
  /** The sender's directory entry, as read for this verification. */
  sender: Partner;
}

/** Split and decode a compact JWS without trusting it: header and (unverified) payload JSON. */
function decodeJws(jws: string, c: Pick<SignedJwsChecks, 'what' | 'expression'>) {
  const malformed = (message: string) => new GatewayError('JWS_MALFORMED', message, { expression: c.expression });
  const parts = jws.split('.');
  const [header64, payload64, signature64] = parts;
  const bytes = parts.length === 3 ? parts.map(canonicalB64uBytes) : [];
  const [headerBytes, payloadBytes, signature] = bytes;
  if (bytes.length !== 3 || bytes.includes(undefined) || !header64 || payload64 === undefined || !signature64)
    throw malformed(`${c.what} does not hold a compact JWS`);
  const headerText = (headerBytes as Buffer).toString('utf8');
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch {
    throw malformed('the JWS header is not JSON');
  }
  if (!header || typeof header !== 'object' || Array.isArray(header))
    throw malformed('the JWS header is not an object');
  const repeated = duplicateMember(headerText);
  if (repeated !== undefined) throw malformed(`the JWS header repeats the member ${JSON.stringify(repeated)}`);
  return {
    header: header as Record<string, unknown>,
    payloadText: (payloadBytes as Buffer).toString('utf8'),
    signingInput: `${header64}.${payload64}`,
    signature: signature as Buffer,
    malformed,
  };
}

/** Deepest nesting of signed claims when the receiver names none: the intake's default, plus the claims object. */
const DEFAULT_CLAIMS_DEPTH = 65;

/**
 * The signed claims, read with the same guards as a Bundle at intake (nesting
 * depth, `__proto__` and `constructor.prototype` keys): a partner's signature
 * does not make content safe to hand on to the local EHR.
 */
export function parseClaims(text: string, maxDepth = DEFAULT_CLAIMS_DEPTH): Record<string, unknown> {
  let claims: unknown;
  try {
    claims = parseFhirJson(text, maxDepth);
  } catch (err) {
    const why = err instanceof GatewayError ? err.message : 'malformed JSON';
    throw new GatewayError('CLAIMS_INVALID', `the signed payload is refused: ${why}`);
  }
  if (!claims || typeof claims !== 'object' || Array.isArray(claims))
    throw new GatewayError('CLAIMS_INVALID', 'the signed payload is not a JSON object');
  const repeated = duplicateMember(text);
  if (repeated !== undefined)
    throw new GatewayError('CLAIMS_INVALID', `the signed payload repeats the member ${JSON.stringify(repeated)}`);
  return claims as Record<string, unknown>;
}

/** Read the claimed sender before verification: it only selects which key to try. */
export function claimedSender(jws: string): string | undefined {
  try {
    const iss = parseClaims(decodeJws(jws, { what: 'the JWS' }).payloadText).iss;
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}

/** The claimed sender, which must be an active partner of the directory. */
export async function activeSender(
  claims: Record<string, unknown>,
  directory: SignedJwsChecks['directory'],
): Promise<{ iss: string; partner: Partner }> {
  const iss = claims.iss;
  if (typeof iss !== 'string' || iss === '')
    throw new GatewayError('CLAIMS_INVALID', 'iss is missing', { expression: 'iss' });
  const partner = await directory.sender(iss);
  if (!partner)
    throw new GatewayError('UNKNOWN_SENDER', `sender ${iss} is not in this gateway's directory`, { expression: 'iss' });
  if (partner.status !== 'active')
    throw new GatewayError('UNKNOWN_SENDER', `sender ${iss} is suspended`, { expression: 'iss' });
  return { iss, partner };
}

/** The sender's current signing key with this kid (EC or ML-DSA-65), or a refusal naming the kid. */
export async function publishedKey(
  directory: SignedJwsChecks['directory'],
  partner: Partner,
  kid: string,
): Promise<PartnerJwk> {
  try {
    return await directory.verificationKey(partner, kid, 'current');
  } catch (err) {
    // No such key published: the signature cannot be from this sender. JWKS fetch trouble (503) stays transient.
    if (err instanceof GatewayError && (err.code === 'FORBIDDEN' || err.code === 'UNPROCESSABLE')) {
      throw new GatewayError('JWS_SIGNATURE_INVALID', `sender ${partner.id} publishes no usable signing key ${kid}`, {
        cause: err,
      });
    }
    throw err;
  }
}

/**
 * Verify a partner's signed JWS: canonical base64url, typ, algorithm
 * allowlist, a kid, no crit, a sender active in the directory and the
 * signature by its published key.
 */
export async function verifySignedJws(jws: string, c: SignedJwsChecks): Promise<VerifiedJwsSender> {
  const { header, payloadText, signingInput, signature, malformed } = decodeJws(jws, c);
  if (header.typ !== c.typ) throw malformed(`JWS typ ${JSON.stringify(header.typ)} is not ${c.typ}`);
  if (!(CONTENT_ALGS as readonly unknown[]).includes(header.alg))
    throw new GatewayError('JWS_SIGNATURE_INVALID', `JWS alg ${JSON.stringify(header.alg)} is not accepted`);
  if (typeof header.kid !== 'string' || header.kid === '') throw malformed('the JWS header names no kid');
  if ('crit' in header) throw malformed('JWS crit is not accepted');
  const claims = parseClaims(payloadText, c.maxDepth);
  const { iss, partner } = await activeSender(claims, c.directory);
  const kid = header.kid;
  const senderJwk = await publishedKey(c.directory, partner, kid);
  // Each algorithm belongs to one curve: a header that names another is a false signature, not a fault of ours.
  const alg = header.alg as (typeof CONTENT_ALGS)[number];
  if (ecdsaCurve(alg) !== senderJwk.crv)
    throw new GatewayError(
      'JWS_SIGNATURE_INVALID',
      `JWS alg ${String(header.alg)} does not match the ${String(senderJwk.crv)} key ${kid} of ${iss}`,
    );
  let key: KeyObject;
  try {
    key = publicKeyOf(senderJwk);
  } catch (err) {
    throw new GatewayError('JWS_SIGNATURE_INVALID', `the key ${kid} of ${iss} is not a usable public key`, {
      cause: err,
    });
  }
  if (!ecdsaSignatureVerifies(alg, signingInput, signature, key))
    throw new GatewayError('JWS_SIGNATURE_INVALID', `the signature of ${iss} on ${c.what} does not verify`);
  return { claims, payloadText, iss, senderKid: kid, senderJwk, sender: partner };
}

/** The window a signed exchange claim set must fall in. */
export interface ClaimWindow {
  /** Our organisation id: the only acceptable aud. */
  org: string;
  /** Accepted clock difference: iat may be at most this far in the future. */
  clockSkewMs: number;
  /** Oldest iat accepted: envelopes are signed once and retried, so this exceeds the senders' delivery horizon. */
  maxAgeMs: number;
  now?: number;
}

const IDENTIFIER = /^[A-Za-z0-9._:-]{1,128}$/;

/** The claims every signed exchange JWS carries: aud = us, iat in the window, jti and exchange identifiers. */
export function checkExchangeClaims(c: Record<string, unknown>, w: ClaimWindow): void {
  if (c.aud !== w.org)
    throw new GatewayError('WRONG_AUDIENCE', `aud ${JSON.stringify(c.aud)} is not this gateway (${w.org})`, {
      expression: 'aud',
    });
  if (typeof c.iat !== 'number' || !Number.isFinite(c.iat))
    throw new GatewayError('CLAIMS_INVALID', 'iat must be a number', { expression: 'iat' });
  const now = w.now ?? Date.now();
  if (c.iat * 1000 > now + w.clockSkewMs)
    throw new GatewayError('IAT_OUT_OF_WINDOW', 'iat is in the future beyond the accepted clock skew', {
      expression: 'iat',
    });
  if (c.iat * 1000 < now - w.maxAgeMs - w.clockSkewMs)
    throw new GatewayError('IAT_OUT_OF_WINDOW', 'iat is older than the accepted window (expired)', {
      expression: 'iat',
    });
  if (typeof c.jti !== 'string' || !IDENTIFIER.test(c.jti))
    throw new GatewayError('CLAIMS_INVALID', 'jti must be an identifier (a UUID)', { expression: 'jti' });
  if (typeof c.exchange !== 'string' || !IDENTIFIER.test(c.exchange))
    throw new GatewayError('CLAIMS_INVALID', 'exchange must be an identifier', { expression: 'exchange' });
}

/** Under mutual TLS the peer certificate names a partner: the signed sender must be that partner. */
export function requireBoundSender(peer: { tlsPartner?: string | undefined }, signedSender: string): void {
  if (peer.tlsPartner !== undefined && peer.tlsPartner !== signedSender) {
    throw new GatewayError(
      'SENDER_MISMATCH',
      `the content is signed by ${signedSender} but the TLS client certificate is bound to ${peer.tlsPartner}`,
      { expression: 'iss' },
    );
  }
}

import { decodeProtectedHeader, errors, jwtVerify, type JWK } from 'jose';
import { importPublicJwk } from '../jose/public-key.ts';
import { repeatedJwtPart } from '../jose/duplicate-members.ts';
import { isPlainIdentifier } from '../ids.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { getClient, type ClientRecord } from './clients.ts';
import { clientKey } from './client-keys.ts';
import { OAuthError } from './oauth-error.ts';

/** SMART Backend Services: the only assertion algorithms accepted (exact, case-sensitive). */
export const ASSERTION_ALGS = ['ES256', 'ES384', 'RS384'] as const;
/** exp may be at most this far ahead. */
export const MAX_ASSERTION_LIFETIME_S = 300;
/** Tolerated clock difference between client and gateway for exp. */
const LEEWAY_S = 30;
/**
 * Header members that point at keys elsewhere or carry one: never followed, always refused.
 * jku is not among them: SMART lets a client name its registered JWKS URL (see registeredJku).
 */
const REFUSED_HEADERS = ['x5u', 'jwk', 'x5c', 'crit'];

export interface VerifiedAssertion {
  client: ClientRecord;
  jti: string;
  exp: number;
}

const bad = (reason: string, description: string, clientId?: string) =>
  new OAuthError('invalid_client', reason, description, clientId);

/**
 * Until the signature holds, the answer must not say what is registered (an
 * unknown client, a disabled one, a kid it lacks): one text for all of them,
 * the reason code goes to the audit entry only.
 */
export const CLIENT_AUTH_FAILED = 'client authentication failed';
const unauthenticated = (reason: string, clientId?: string) => bad(reason, CLIENT_AUTH_FAILED, clientId);

/**
 * SMART Backend Services key lookup: a jku header is honoured only when it is
 * the JWKS URL the client registered (keys then come from that URL as without
 * it); any other URL, or a jku on a client with inline keys, fails authentication.
 */
function registeredJku(client: ClientRecord, jku: string): boolean {
  if (!client.jwksUri) return false;
  try {
    return new URL(jku).toString() === client.jwksUri;
  } catch {
    return false;
  }
}

function unverifiedClaims(jwt: string): Record<string, unknown> {
  try {
    const payload = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8'));
    return payload && typeof payload === 'object' ? payload : {};
  } catch {
    return {};
  }
}

/**
 * Check a private_key_jwt client assertion against the client's registered
 * keys, then record its jti (replay guard, kept until exp). The header is
 * screened before any key is touched, so alg confusion never reaches jose.
 */
export async function verifyClientAssertion(
  ctx: GatewayContext,
  assertion: string,
  tokenUrl: string,
): Promise<VerifiedAssertion> {
  if (assertion.length > 16_384 || assertion.split('.').length !== 3)
    throw bad('malformed_assertion', 'client_assertion must be a compact JWS');
  let header: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(assertion) as Record<string, unknown>;
  } catch {
    throw bad('malformed_assertion', 'client_assertion header cannot be decoded');
  }
  const repeated = repeatedJwtPart(assertion);
  if (repeated) throw bad('malformed_assertion', `the client_assertion ${repeated} repeats a member`);
  const alg = header.alg;
  if (typeof alg !== 'string' || !(ASSERTION_ALGS as readonly string[]).includes(alg)) {
    throw bad('alg_not_allowed', `alg ${JSON.stringify(alg)} is not accepted; use one of ${ASSERTION_ALGS.join(', ')}`);
  }
  const refused = REFUSED_HEADERS.filter((h) => h in header);
  if (refused.length)
    throw bad(
      'header_refused',
      `header member(s) ${refused.join(', ')} are not accepted; keys come from the registered JWKS only`,
    );
  if ('jku' in header && (typeof header.jku !== 'string' || header.jku === ''))
    throw bad('malformed_assertion', 'jku must be the registered JWKS URL');
  if (typeof header.kid !== 'string' || header.kid === '')
    throw bad('kid_missing', 'the assertion header must name a kid of the registered JWKS');

  // iss names the client; trust nothing else in the claims until the signature checks out.
  const iss = unverifiedClaims(assertion).iss;
  if (typeof iss !== 'string' || iss === '' || iss.length > 200) throw bad('iss_missing', 'iss must be the client id');
  const client = await getClient(ctx.pool, iss);
  if (!client) throw unauthenticated('unknown_client');
  if (!client.enabled) throw unauthenticated('client_disabled', client.id);
  if (typeof header.jku === 'string' && !registeredJku(client, header.jku))
    throw unauthenticated('jku_not_registered', client.id);

  let jwk: JWK | undefined;
  try {
    jwk = await clientKey(ctx, client, header.kid);
  } catch {
    throw unauthenticated('jwks_unavailable', client.id);
  }
  if (!jwk) throw unauthenticated('kid_unknown', client.id);
  if (jwk.alg !== undefined && jwk.alg !== alg) throw unauthenticated('alg_mismatch', client.id);

  let payload: Record<string, unknown>;
  try {
    const key = importPublicJwk(jwk);
    const result = await jwtVerify(assertion, key, {
      algorithms: [alg],
      issuer: client.id,
      subject: client.id,
      audience: tokenUrl,
      requiredClaims: ['exp', 'jti', 'iss', 'sub', 'aud'],
      clockTolerance: LEEWAY_S,
    });
    payload = result.payload as Record<string, unknown>;
  } catch (err) {
    // jose checks claims only after the signature: a claim failure comes from the key's holder, who may hear which.
    if (err instanceof errors.JWTExpired) throw bad('expired', 'client_assertion rejected (expired)', client.id);
    if (err instanceof errors.JWTClaimValidationFailed)
      throw bad(`claim_${err.claim}`, `client_assertion rejected (claim_${err.claim})`, client.id);
    throw unauthenticated('signature_invalid', client.id);
  }
  const exp = payload.exp as number;
  const now = Math.floor(Date.now() / 1000);
  if (exp > now + MAX_ASSERTION_LIFETIME_S + LEEWAY_S)
    throw bad('exp_too_far', `exp is more than ${MAX_ASSERTION_LIFETIME_S} s ahead`, client.id);
  const jti = payload.jti;
  if (!isPlainIdentifier(jti) || jti.length > 255)
    throw bad('claim_jti', 'jti must be 1 to 255 characters, none of them a control character', client.id);

  await ctx.pool.query('DELETE FROM auth_assertion_jtis WHERE expires_at < now()');
  const { rowCount } = await ctx.pool.query(
    `INSERT INTO auth_assertion_jtis (client_id, jti, expires_at) VALUES ($1, $2, to_timestamp($3) + make_interval(secs => $4))
     ON CONFLICT DO NOTHING`,
    [client.id, jti, exp, LEEWAY_S],
  );
  if (!rowCount) throw bad('jti_replayed', 'this assertion jti was already used', client.id);
  return { client, jti, exp };
}

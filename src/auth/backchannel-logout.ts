import { decodeProtectedHeader, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import { endIssuerSessions } from '../audit/users.ts';
import { inTransaction } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';
import { repeatedJwtPart } from '../jose/duplicate-members.ts';
import { CLOCK_TOLERANCE_S, issuerId, type SsoClient } from './sso.ts';

/**
 * OpenID Connect Back-Channel Logout 1.0: when a person's session at the
 * issuer ends, the issuer posts a signed logout token, and the gateway ends
 * the sessions bound to that issuer session. The token is checked as the
 * spec's section 2.6 says, in its order; any failure is a LogoutRefusal,
 * which the route answers 400 invalid_request.
 */
export const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

/**
 * How old a logout token may be (by its iat), whatever its exp says: the spec
 * asks issuers for lifetimes of at most two minutes, so a jti needs keeping
 * no longer than this.
 */
export const LOGOUT_TOKEN_MAX_AGE_S = 120;

/** Far longer than any logout token (a few claims and a signature). */
export const MAX_LOGOUT_TOKEN_LENGTH = 8 * 1024;

/**
 * `typ` values of a logout token: the explicit type the spec recommends, or a
 * plain JWT (many issuers type none). A token typed as another kind of JWT
 * (an access token, say) is not a logout token, whatever its claims.
 */
const LOGOUT_TOKEN_TYPES = new Set(['logout+jwt', 'application/logout+jwt', 'jwt', 'application/jwt']);

/** A refused logout: a stable reason for the audit trail, and the error_description the issuer reads. */
export class LogoutRefusal extends Error {
  readonly reason: string;
  constructor(reason: string, description: string) {
    super(description);
    this.name = 'LogoutRefusal';
    this.reason = reason;
  }
}

export interface LogoutToken {
  issuer: string;
  jti: string;
  sid?: string;
  subject?: string;
  /** Epoch seconds until which a token with this jti could still be accepted: how long the jti is kept. */
  acceptableUntil: number;
}

const refuse = (reason: string, description: string) => new LogoutRefusal(reason, description);

/** The issuer's keys could not be fetched: nothing is known yet about the token. */
class IssuerKeysUnavailable extends Error {}

/** The issuer's key set, with a failure to fetch it told apart from a token whose key it lacks. */
function fetchedKeys(keys: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await keys(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err;
      throw new IssuerKeysUnavailable('the issuer keys cannot be fetched', { cause: err });
    }
  };
}

/**
 * The algorithms an ID token of this issuer may be signed with (the spec
 * validates the logout token's alg the same way): what the issuer advertises,
 * else RS256; never `none`, and no HMAC, since the keys are the issuer's
 * published public keys.
 */
function signingAlgorithms(sso: SsoClient): string[] {
  const advertised = sso.config.serverMetadata().id_token_signing_alg_values_supported ?? ['RS256'];
  const asymmetric = advertised.filter((alg) => alg !== 'none' && !alg.startsWith('HS'));
  return asymmetric.length > 0 ? asymmetric : ['RS256'];
}

const CLAIM_REASONS: Record<string, string> = { iss: 'wrong_issuer', aud: 'wrong_audience', iat: 'iat_in_future' };

/** jose's refusal in the gateway's words. */
function refusalOf(err: unknown): LogoutRefusal | GatewayError {
  if (err instanceof IssuerKeysUnavailable)
    return new GatewayError('UNAVAILABLE', "the issuer's keys cannot be fetched; try again shortly", {
      retryAfter: 5,
      cause: err,
    });
  if (err instanceof errors.JWTExpired)
    return err.claim === 'iat'
      ? refuse('iat_too_old', `the logout token was issued more than ${LOGOUT_TOKEN_MAX_AGE_S} s ago`)
      : refuse('expired', 'the logout token has expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') return refuse(`${err.claim}_missing`, `the logout token has no ${err.claim} claim`);
    const reason = CLAIM_REASONS[err.claim] ?? `${err.claim}_invalid`;
    return refuse(reason, `the logout token's ${err.claim} claim does not validate`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return refuse('alg_not_allowed', 'the logout token alg is not accepted');
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys)
    return refuse('kid_unknown', 'no key of the issuer matches the logout token');
  if (err instanceof errors.JWSSignatureVerificationFailed)
    return refuse('signature_invalid', 'the logout token signature does not verify');
  return refuse('malformed_token', 'logout_token is not a signed JWT the gateway can read');
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Validate a logout token: a compact JWS whose members are named once, signed
 * by a key the issuer publishes with an algorithm its ID tokens may use, from
 * this issuer, for this client, issued within LOGOUT_TOKEN_MAX_AGE_S (and not
 * expired, when it says when), declaring the back-channel logout event,
 * without a nonce, naming a sid or a sub, with a jti.
 */
export async function verifyLogoutToken(sso: SsoClient, token: string, now = new Date()): Promise<LogoutToken> {
  if (token.length > MAX_LOGOUT_TOKEN_LENGTH || token.split('.').length !== 3)
    throw refuse('malformed_token', 'logout_token must be a compact JWS (a signed JWT)');
  let header: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(token) as Record<string, unknown>;
  } catch {
    throw refuse('malformed_token', 'the logout token header cannot be decoded');
  }
  const repeated = repeatedJwtPart(token);
  if (repeated) throw refuse('malformed_token', `the logout token ${repeated} repeats a member`);
  if (header.typ !== undefined && !LOGOUT_TOKEN_TYPES.has(String(header.typ).toLowerCase()))
    throw refuse('not_a_logout_token', 'the token is typed as another kind of JWT');
  if (!sso.issuerKeys)
    throw refuse('issuer_keys_unknown', 'the issuer publishes no keys the gateway may fetch (an https jwks_uri)');
  const issuer = sso.config.serverMetadata().issuer;
  let claims: JWTPayload;
  try {
    ({ payload: claims } = await jwtVerify(token, fetchedKeys(sso.issuerKeys), {
      algorithms: signingAlgorithms(sso),
      issuer,
      audience: sso.settings.oidcClientId as string,
      clockTolerance: CLOCK_TOLERANCE_S,
      maxTokenAge: LOGOUT_TOKEN_MAX_AGE_S,
      requiredClaims: ['iat', 'jti', 'events'],
      currentDate: now,
    }));
  } catch (err) {
    throw refusalOf(err);
  }
  const events = claims['events'];
  if (!isObject(events) || !isObject(events[BACKCHANNEL_LOGOUT_EVENT]))
    throw refuse('not_a_logout_event', `events must name ${BACKCHANNEL_LOGOUT_EVENT}`);
  // An ID token has a nonce; a logout token never does, so one cannot pass for the other.
  if (Object.hasOwn(claims, 'nonce')) throw refuse('nonce_present', 'a logout token carries no nonce');
  const sid = issuerId(claims.sid);
  const subject = issuerId(claims.sub);
  if (claims.sid !== undefined && !sid) throw refuse('sid_invalid', 'sid must be 1 to 255 characters of plain text');
  if (claims.sub !== undefined && !subject)
    throw refuse('sub_invalid', 'sub must be 1 to 255 characters of plain text');
  if (!sid && !subject) throw refuse('sid_and_sub_missing', 'the logout token names neither a sid nor a sub');
  const jti = issuerId(claims.jti);
  if (!jti) throw refuse('jti_invalid', 'jti must be 1 to 255 characters of plain text');
  const iat = claims.iat as number; // required above, and a number (jose checks it)
  const acceptableUntil = Math.min(claims.exp ?? Infinity, iat + LOGOUT_TOKEN_MAX_AGE_S) + CLOCK_TOLERANCE_S;
  return { issuer, jti, acceptableUntil, ...(sid ? { sid } : {}), ...(subject ? { subject } : {}) };
}

/**
 * One back-channel logout: verify the token, take its jti (a replay is
 * refused), end the sessions it names and audit it, in one transaction.
 * Ending no session is a success too (they lapsed, or were signed out here).
 * Returns how many sessions ended.
 */
export async function backchannelLogout(
  pool: pg.Pool,
  sso: SsoClient,
  token: string,
  network?: string,
): Promise<number> {
  const logout = await verifyLogoutToken(sso, token);
  return inTransaction(pool, async (db) => {
    await db.query('DELETE FROM sso_logout_jtis WHERE expires_at < now()');
    const { rowCount } = await db.query(
      `INSERT INTO sso_logout_jtis (issuer, jti, expires_at) VALUES ($1, $2, to_timestamp($3))
       ON CONFLICT DO NOTHING`,
      [logout.issuer, logout.jti, logout.acceptableUntil],
    );
    if (!rowCount) throw refuse('jti_replayed', 'this logout token (its jti) was already used');
    const ended = await endIssuerSessions(db, logout.issuer, logout);
    const by = logout.sid ? 'sid' : 'sub';
    const where = network ? { network } : {};
    const names = [...new Set(ended.map((s) => s.name))];
    const entries: AuditInput[] = names.map((name) => {
      const sessions = ended.filter((s) => s.name === name);
      return {
        type: 'sso.backchannel-logout',
        outcome: 'success',
        agent: { type: 'user', id: name, ...where },
        detail: { via: 'sso', by, subject: sessions[0]?.subject ?? null, sessions: sessions.length },
      };
    });
    if (entries.length === 0) {
      entries.push({
        type: 'sso.backchannel-logout',
        outcome: 'success',
        agent: { type: 'anonymous', id: 'unknown', ...where },
        detail: { via: 'sso', by, subject: logout.subject ?? null, sessions: 0 },
      });
    }
    await appendAudit(db, entries);
    return ended.length;
  });
}

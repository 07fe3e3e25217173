/** RFC 6749 section 5.2 error codes the token endpoint answers with. */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope';

/**
 * A token endpoint refusal. `reason` is a stable, non-secret code for the
 * audit trail and tests (e.g. alg_not_allowed, jti_replayed).
 */
export class OAuthError extends Error {
  readonly error: OAuthErrorCode;
  readonly reason: string;
  readonly clientId: string | undefined;
  constructor(error: OAuthErrorCode, reason: string, description: string, clientId?: string) {
    super(description);
    this.name = 'OAuthError';
    this.error = error;
    this.reason = reason;
    this.clientId = clientId;
  }
  /** invalid_client is a failed client authentication: 401; the rest are 400. */
  get status(): number {
    return this.error === 'invalid_client' ? 401 : 400;
  }
  body(): { error: OAuthErrorCode; error_description: string } {
    return { error: this.error, error_description: this.message };
  }
}

/** An HTTP auth-scheme token (RFC 9110 section 11.1), short enough to echo. */
const SCHEME_RE = /^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,31})(?:[ ]|$)/;

/**
 * The WWW-Authenticate of a 401 from the token endpoint. RFC 6749 section 5.2:
 * a client that tried the Authorization header hears a challenge in its own
 * scheme; every other 401 (RFC 9110 requires a challenge) names the one method
 * this endpoint takes, a private_key_jwt client assertion in the body.
 */
export function clientAuthChallenge(authorization: string | undefined): string {
  const scheme = SCHEME_RE.exec(authorization ?? '')?.[1] ?? 'private_key_jwt';
  return `${scheme} realm="fhir-gateway", error="invalid_client"`;
}

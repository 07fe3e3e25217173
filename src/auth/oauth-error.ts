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

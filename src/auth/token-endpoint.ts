import type { GatewayContext } from '../gateway-context.ts';
import { appendAudit } from '../audit/append.ts';
import { tokenIssuedEvent } from './audit.ts';
import { verifyClientAssertion } from './assertion.ts';
import { OAuthError } from './oauth-error.ts';
import { isValidScope, parseScopes, scopeWithin } from './scopes.ts';
import { issueAccessToken } from './tokens.ts';
import { chargeRate } from './rate-limit.ts';
import { inTransaction } from '../db/pool.ts';

export const TOKEN_PATH = '/auth/token';
export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export interface TokenResponse {
  access_token: string;
  token_type: 'bearer';
  expires_in: number;
  scope: string;
}

export const tokenUrl = (ctx: GatewayContext) => ctx.config.baseUrl + TOKEN_PATH;

function param(form: Record<string, unknown>, name: string): string | undefined {
  const v = form[name];
  if (v === undefined) return undefined;
  // RFC 6749 section 3.2: parameters must not be repeated.
  if (typeof v !== 'string')
    throw new OAuthError('invalid_request', 'repeated_parameter', `${name} must be given once`);
  return v;
}

/**
 * SMART Backend Services token request: client_credentials with a
 * private_key_jwt assertion. Returns the token response or throws OAuthError.
 */
export async function handleTokenRequest(
  ctx: GatewayContext,
  form: Record<string, unknown>,
  remoteAddress: string,
): Promise<TokenResponse> {
  const grantType = param(form, 'grant_type');
  if (grantType === undefined) throw new OAuthError('invalid_request', 'grant_type_missing', 'grant_type is required');
  if (grantType !== 'client_credentials')
    throw new OAuthError(
      'unsupported_grant_type',
      'grant_type_unsupported',
      'only grant_type=client_credentials is supported',
    );
  const assertionType = param(form, 'client_assertion_type');
  if (assertionType !== ASSERTION_TYPE)
    throw new OAuthError(
      'invalid_request',
      'assertion_type_invalid',
      `client_assertion_type must be ${ASSERTION_TYPE}`,
    );
  const assertion = param(form, 'client_assertion');
  if (!assertion) throw new OAuthError('invalid_request', 'assertion_missing', 'client_assertion is required');
  const scopeParam = param(form, 'scope');

  const { client } = await verifyClientAssertion(ctx, assertion, tokenUrl(ctx));
  chargeRate(ctx, client.id, client.rateLimit);

  if (!scopeParam)
    throw new OAuthError(
      'invalid_scope',
      'scope_missing',
      'scope is required (space-separated system/ scopes)',
      client.id,
    );
  const requested = parseScopes(scopeParam);
  const malformed = requested.filter((s) => !isValidScope(s));
  if (malformed.length)
    throw new OAuthError(
      'invalid_scope',
      'scope_invalid',
      `not a SMART system scope this gateway offers: ${malformed.join(' ')}`,
      client.id,
    );
  // Granted as asked, in the syntax asked (v1 or v2): the token holds the requested strings.
  const notAllowed = requested.filter((s) => !scopeWithin(client.scopes, s));
  if (requested.length === 0 || notAllowed.length) {
    throw new OAuthError(
      'invalid_scope',
      'scope_not_allowed',
      `scope not allowed for this client: ${notAllowed.join(' ')}`,
      client.id,
    );
  }

  const issued = await inTransaction(ctx.pool, async (db) => {
    const token = await issueAccessToken(db, { clientId: client.id, scopes: requested }, ctx.config.accessTokenTtl);
    await appendAudit(db, [tokenIssuedEvent({ clientId: client.id, remoteAddress }, requested, token.expiresIn)]);
    return token;
  });
  return {
    access_token: issued.accessToken,
    token_type: 'bearer',
    expires_in: issued.expiresIn,
    scope: requested.join(' '),
  };
}

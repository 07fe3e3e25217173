import type { FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import type { GatewayContext } from '../src/gateway-context.ts';
import { GatewayError } from '../src/errors.ts';
import { operationOutcome } from '../src/fhir/outcome.ts';
import { auditRefusal, markRefusalAudited } from '../src/auth/audit.ts';
import { chargeRate } from '../src/auth/rate-limit.ts';
import { hasAnyScope } from '../src/auth/scopes.ts';
import { lookupAccessToken } from '../src/auth/tokens.ts';
import { required } from '../src/required.ts';

export * from '../src/auth/scopes.ts';

/** The authenticated caller of a request. */
export interface Principal {
  clientId: string;
  scopes: string[];
  /** The client's registered default purpose of use ([]: none). */
  purposeOfUse?: string[];
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

/** Marks a preHandler as an access guard, so the default-deny hook can tell guarded routes apart. */
export const GUARD = Symbol.for('fhir-gateway.auth-guard');
/** Marks the guards made by requireScope: bearer-only routes, authenticated early (before the body is read). */
export const BEARER_GUARD = Symbol.for('fhir-gateway.bearer-guard');

function bearerToken(request: FastifyRequest): string | undefined {
  const h = request.headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer[ ]+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(h);
  return m?.[1];
}

function refuse401(reply: FastifyReply, error: 'invalid_request' | 'invalid_token', diagnostics: string) {
  // RFC 6750: say which scheme, and why, without echoing the token.
  const challenge =
    error === 'invalid_request' ? 'Bearer realm="fhir-gateway"' : `Bearer realm="fhir-gateway", error="invalid_token"`;
  return reply
    .code(401)
    .header('WWW-Authenticate', challenge)
    .header('Cache-Control', 'no-store')
    .type('application/fhir+json')
    .send(operationOutcome({ code: 'login', errorCode: 'UNAUTHENTICATED', diagnostics }));
}

/**
 * Authenticate the request's bearer token (once per request) and set
 * request.principal. Returns false after answering 401 itself.
 */
export async function authenticate(
  ctx: GatewayContext,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<boolean> {
  if (request.principal) return true;
  const remoteAddress = request.ip;
  const token = bearerToken(request);
  if (!token) {
    await auditRefusal(
      ctx.pool,
      ctx.logger,
      'auth.failure',
      { remoteAddress },
      { reason: 'missing_token', route: request.routeOptions.url ?? null },
    );
    await refuse401(reply, 'invalid_request', 'a bearer access token is required (POST /auth/token)');
    return false;
  }
  const grant = await lookupAccessToken(ctx.pool, token);
  if (!grant) {
    await auditRefusal(
      ctx.pool,
      ctx.logger,
      'auth.failure',
      { remoteAddress },
      { reason: 'invalid_token', route: request.routeOptions.url ?? null },
    );
    await refuse401(reply, 'invalid_token', 'the access token is unknown, expired or revoked');
    return false;
  }
  chargeRate(ctx, grant.clientId, grant.rateLimit);
  request.principal = { clientId: grant.clientId, scopes: grant.scopes, purposeOfUse: grant.purposeOfUse };
  return true;
}

/**
 * preHandler: a valid bearer token carrying at least one of `anyOf`.
 * 401 without or with a bad token, 403 when no listed scope is granted,
 * 429 when the client is over its rate limit.
 */
export function requireScope(ctx: GatewayContext, ...anyOf: string[]): preHandlerAsyncHookHandler {
  if (anyOf.length === 0) throw new Error('requireScope needs at least one scope');
  const guard = async function (this: unknown, request: FastifyRequest, reply: FastifyReply) {
    if (!(await authenticate(ctx, request, reply))) return reply;
    const principal = required(request.principal, 'a principal once authentication succeeded');
    if (!hasAnyScope(principal.scopes, anyOf)) {
      await auditRefusal(
        ctx.pool,
        ctx.logger,
        'authz.denied',
        { clientId: principal.clientId, remoteAddress: request.ip },
        {
          reason: 'insufficient_scope',
          required: anyOf.join(' '),
          route: request.routeOptions.url ?? null,
          method: request.method,
        },
      );
      reply.header(
        'WWW-Authenticate',
        `Bearer realm="fhir-gateway", error="insufficient_scope", scope="${anyOf.join(' ')}"`,
      );
      throw markRefusalAudited(new GatewayError('FORBIDDEN', `this token lacks the scope ${anyOf.join(' or ')}`));
    }
  };
  Object.defineProperty(guard, GUARD, { value: true });
  Object.defineProperty(guard, BEARER_GUARD, { value: true });
  return guard as preHandlerAsyncHookHandler;
}

export function isGuard(fn: unknown, mark: symbol = GUARD): boolean {
  return typeof fn === 'function' && (fn as unknown as Record<symbol, unknown>)[mark] === true;
}

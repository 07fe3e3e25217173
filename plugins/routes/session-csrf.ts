import type { FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { auditRefusal } from '../../src/auth/audit.ts';
import { cookie, SESSION_COOKIE } from './audit-guard.ts';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export type CrossSiteProblem = 'cross_origin' | 'origin_missing' | 'not_json';

/**
 * Why a browser request that changes state may have been forged by another
 * site, or undefined when it cannot have been. A cookie travels with any
 * request the browser makes, so SameSite alone is not relied on: the Origin
 * must be the gateway's own, and the body JSON, which a cross-site HTML form
 * cannot send (and a cross-site fetch cannot send without a CORS preflight
 * the gateway never grants). Without an Origin, only Sec-Fetch-Site:
 * same-origin vouches for the request; `originOptional` lets a non-browser
 * client (no Origin, no Sec-Fetch-Site) through where no cookie is involved.
 */
export function crossSiteProblem(
  request: FastifyRequest,
  ownOrigin: string,
  originOptional: boolean,
): CrossSiteProblem | undefined {
  const origin = request.headers.origin;
  const site = request.headers['sec-fetch-site'];
  if (origin !== undefined) {
    if (origin !== ownOrigin) return 'cross_origin';
  } else if (site !== 'same-origin') {
    if (site !== undefined) return 'cross_origin';
    if (!originOptional) return 'origin_missing';
  }
  return isJsonOrEmpty(request) ? undefined : 'not_json';
}

/** application/json, or no body at all (a bodyless POST such as sign-out). */
function isJsonOrEmpty(request: FastifyRequest): boolean {
  const type = request.headers['content-type'];
  if (type !== undefined) return type.split(';')[0]?.trim().toLowerCase() === 'application/json';
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] === undefined && (length === undefined || length === '0');
}

/**
 * onRequest (before the body is read): refuse a state-changing browser
 * request another site could have made, 403 (415 for a body that is not
 * JSON), audited as authz.denied. `session` covers requests authenticated
 * by the audit page's session cookie (bearer-token requests are untouched);
 * `sign-in` covers the sign-in itself, which carries no session yet.
 */
export function refuseCrossSite(ctx: GatewayContext, mode: 'session' | 'sign-in'): onRequestAsyncHookHandler {
  const ownOrigin = new URL(ctx.config.baseUrl).origin;
  return async (request) => {
    if (SAFE_METHODS.has(request.method)) return;
    if (mode === 'session' && (request.headers.authorization || cookie(request, SESSION_COOKIE) === undefined)) return;
    const problem = crossSiteProblem(request, ownOrigin, mode === 'sign-in');
    if (!problem) return;
    await auditRefusal(
      ctx.pool,
      ctx.logger,
      'authz.denied',
      { remoteAddress: request.ip },
      {
        reason: problem,
        route: request.routeOptions.url ?? null,
        method: request.method,
        origin: request.headers.origin?.slice(0, 200) ?? null,
      },
    );
    if (problem === 'not_json')
      throw new GatewayError('UNSUPPORTED_MEDIA_TYPE', 'send the request body as application/json');
    throw new GatewayError(
      'FORBIDDEN',
      problem === 'cross_origin'
        ? 'cross-origin request refused: the Origin is not this gateway'
        : 'request refused: a browser request that changes state must carry an Origin header',
    );
  };
}

import type { FastifyContextConfig, FastifyInstance, RouteOptions, onRequestAsyncHookHandler } from 'fastify';
import type { GatewayContext } from '../src/gateway-context.ts';
import { BEARER_GUARD, GUARD, authenticate, isGuard, requireScope } from './guard.ts';
import { SCOPE_ADMIN } from '../src/auth/scopes.ts';

/**
 * A route says itself whether anyone may call it (`config.public`) or whether
 * a peer gateway calls it (`config.peer`: authenticated by the signed content
 * and, when configured, mutual TLS). Every other route needs a bearer token.
 */
export function isOpenRoute(route: Pick<RouteOptions, 'config'>): boolean {
  const config = route.config as FastifyContextConfig | undefined;
  return Boolean(config?.public || config?.peer);
}

function hasGuard(route: RouteOptions, mark: symbol): boolean {
  const pre = route.preHandler;
  return Array.isArray(pre) ? pre.some((fn) => isGuard(fn, mark)) : isGuard(pre, mark);
}

/**
 * Default deny, for every route registered after this call:
 * - public or peer by declaration (isOpenRoute): untouched, and listed in `openRoutes`;
 * - guarded by requireScope(): the bearer token is also checked in onRequest,
 *   before the body is read, so an anonymous caller cannot make us parse 10 MB;
 * - guarded by another marked guard (e.g. the audit UI's session cookie): that guard decides;
 * - not guarded at all: authenticated early AND restricted to the admin scope,
 *   so a route someone forgot to guard is still closed to EHR clients.
 * Call before registering routes.
 */
export function installDefaultDeny(app: FastifyInstance, ctx: GatewayContext): ReadonlySet<string> {
  const openRoutes = new Set<string>();
  const adminOnly = requireScope(ctx, SCOPE_ADMIN);
  const authenticateEarly: onRequestAsyncHookHandler = async (request, reply) => {
    if (!(await authenticate(ctx, request, reply))) return reply;
  };
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (isOpenRoute(route)) {
      for (const m of methods) openRoutes.add(`${m} ${route.url}`);
      return;
    }
    const bearerGuarded = hasGuard(route, BEARER_GUARD);
    if (!bearerGuarded && hasGuard(route, GUARD)) return;
    const onRequest = route.onRequest;
    route.onRequest = [authenticateEarly, ...(Array.isArray(onRequest) ? onRequest : onRequest ? [onRequest] : [])];
    if (bearerGuarded) return;
    ctx.logger.warn(
      { url: route.url, method: route.method },
      'route has no access guard: admin scope required (default deny)',
    );
    const pre = route.preHandler;
    route.preHandler = [adminOnly, ...(Array.isArray(pre) ? pre : pre ? [pre] : [])];
  });
  return openRoutes;
}

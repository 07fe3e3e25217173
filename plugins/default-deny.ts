import type { FastifyInstance, RouteOptions, onRequestAsyncHookHandler } from 'fastify';
import type { GatewayContext } from '../src/gateway-context.ts';
import { BEARER_GUARD, GUARD, authenticate, isGuard, requireScope } from './guard.ts';
import { SCOPE_ADMIN } from '../src/auth/scopes.ts';
import { PROTOCOL } from '../src/protocol/wire.ts';

/**
 * Routes anyone may call. Everything else needs a bearer token: the inbox is
 * authenticated by the envelope's signature (and optionally mutual TLS).
 */
const PUBLIC_ROUTES: Array<{ method: string; url: RegExp }> = [
  { method: 'GET', url: /^\/(health|ready)$/ },
  { method: 'GET', url: /^\/fhir\/metadata$/ },
  { method: 'GET', url: /^\/\.well-known\/[^/]+$/ },
  { method: 'GET', url: /^\/openapi\.yaml$/ },
  { method: 'GET', url: /^\/docs(\/.*)?$/ },
  { method: 'POST', url: new RegExp(`^${PROTOCOL.inboxPath}$`) },
  // Imaging deliveries: authenticated by the signed manifest, like the inbox.
  { method: 'POST', url: new RegExp(`^${PROTOCOL.inboxPath}/imaging$`) },
  { method: 'POST', url: /^\/auth\/token$/ },
];

export function isPublicRoute(method: string, url: string): boolean {
  const m = method === 'HEAD' ? 'GET' : method;
  return PUBLIC_ROUTES.some((r) => r.method === m && r.url.test(url));
}

function hasGuard(route: RouteOptions, mark: symbol): boolean {
  const pre = route.preHandler;
  return Array.isArray(pre) ? pre.some((fn) => isGuard(fn, mark)) : isGuard(pre, mark);
}

/**
 * Default deny, for every route registered after this call:
 * - public (allowlist above): untouched;
 * - guarded by requireScope(): the bearer token is also checked in onRequest,
 *   before the body is read, so an anonymous caller cannot make us parse 10 MB;
 * - guarded by another marked guard (e.g. the audit UI's session cookie): that guard decides;
 * - not guarded at all: authenticated early AND restricted to the admin scope,
 *   so a route someone forgot to guard is still closed to EHR clients.
 * Call before registering routes.
 */
export function installDefaultDeny(app: FastifyInstance, ctx: GatewayContext): void {
  const adminOnly = requireScope(ctx, SCOPE_ADMIN);
  const authenticateEarly: onRequestAsyncHookHandler = async (request, reply) => {
    if (!(await authenticate(ctx, request, reply))) return reply;
  };
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (methods.every((m) => isPublicRoute(m, route.url ?? ''))) return;
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
}

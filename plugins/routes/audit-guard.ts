import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { GUARD, requireScope, SCOPE_AUDIT_READ } from '../guard.ts';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { sessionState, type AccountRole } from '../../src/audit/users.ts';
import { auditRefusal } from '../../src/auth/audit.ts';
import { GatewayError } from '../../src/errors.ts';
import { pendingRefusal } from '../../src/mfa/policy.ts';

export const SESSION_COOKIE = 'gw_audit_session';

declare module 'fastify' {
  interface FastifyRequest {
    auditUser?: string;
  }
}

/** The session cookie's Set-Cookie value: HttpOnly, SameSite=Strict, Secure when the gateway is reached over https. */
export function sessionCookie(ctx: GatewayContext, value: string, maxAgeSeconds: number): string {
  const secure = ctx.config.baseUrl.startsWith('https:') || Boolean(ctx.config.tlsCertFile);
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure ? '; Secure' : ''}`;
}

export function cookie(request: FastifyRequest, name: string): string | undefined {
  const header = request.headers.cookie;
  if (typeof header !== 'string') return undefined;
  for (const part of header.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

/**
 * The account a session cookie signs in, or undefined without a session. A
 * pending session (a password alone, with a second factor or an enrolment
 * still due) is refused here, for every cookie-authenticated route at once:
 * 403 MFA_ENROLMENT_REQUIRED or SECOND_FACTOR_REQUIRED, audited as authz.denied.
 * Only the second-factor routes (plugins/routes/mfa.ts) read pending sessions.
 */
export async function cookieAccount(
  ctx: GatewayContext,
  request: FastifyRequest,
): Promise<{ name: string; role: AccountRole } | undefined> {
  const state = await sessionState(ctx.pool, cookie(request, SESSION_COOKIE));
  if (!state) return undefined;
  if (state.stage === 'full') return { name: state.name, role: state.role };
  const refusal = pendingRefusal(state.stage);
  await auditRefusal(
    ctx.pool,
    ctx.logger,
    'authz.denied',
    { user: state.name, remoteAddress: request.ip },
    { reason: refusal.code.toLowerCase(), route: request.routeOptions.url ?? null, method: request.method },
  );
  throw new GatewayError(refusal.code, refusal.message);
}

/**
 * For the pages themselves (GET /audit/ui/, /console/): the signed-in
 * account, 'pending' when a second factor or an enrolment is due (the page
 * sends the browser to the sign-in security page instead), or undefined.
 */
export async function pageAccount(
  ctx: GatewayContext,
  request: FastifyRequest,
): Promise<{ name: string; role: AccountRole } | 'pending' | undefined> {
  const state = await sessionState(ctx.pool, cookie(request, SESSION_COOKIE));
  if (!state) return undefined;
  return state.stage === 'full' ? { name: state.name, role: state.role } : 'pending';
}

export const markGuard = <T extends object>(fn: T): T => Object.defineProperty(fn, GUARD, { value: true });

/**
 * Who may read the audit trail: a signed-in compliance officer (session
 * cookie from /audit/ui), or a client whose bearer token has
 * system/AuditEvent.read (for SIEM exports and scripts).
 */
export function auditReader(ctx: GatewayContext): preHandlerAsyncHookHandler {
  const bearer = requireScope(ctx, SCOPE_AUDIT_READ);
  return markGuard(async function (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
    if (!request.headers.authorization) {
      const account = await cookieAccount(ctx, request);
      if (account?.role === 'compliance') {
        request.auditUser = account.name;
        return;
      }
    }
    return bearer.call(this, request, reply);
  } as preHandlerAsyncHookHandler);
}

/** Deliberately public (the sign-in page and its static files): marked so default-deny lets it through. */
export const publicAccess: preHandlerAsyncHookHandler = markGuard(async function () {} as preHandlerAsyncHookHandler);

import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { GUARD, requireScope, SCOPE_AUDIT_READ } from '../guard.ts';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { sessionUser } from '../../src/audit/users.ts';

export const SESSION_COOKIE = 'gw_audit_session';

declare module 'fastify' {
  interface FastifyRequest {
    auditUser?: string;
  }
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
      const user = await sessionUser(ctx.pool, cookie(request, SESSION_COOKIE));
      if (user) {
        request.auditUser = user;
        return;
      }
    }
    return bearer.call(this, request, reply);
  } as preHandlerAsyncHookHandler);
}

/** Deliberately public (the sign-in page and its static files): marked so default-deny lets it through. */
export const publicAccess: preHandlerAsyncHookHandler = markGuard(async function () {} as preHandlerAsyncHookHandler);

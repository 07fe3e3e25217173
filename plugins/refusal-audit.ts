import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { GatewayContext } from '../src/gateway-context.ts';
import { GatewayError } from '../src/errors.ts';
import { keepRefusal } from '../src/auth/audit.ts';
import { auditEarlyRefusal } from '../src/inbound/receive.ts';
import { auditIntakeRefusal } from '../src/outbound/intake.ts';
import type { ErrorDecision, RefusalAuditType } from './route-policy.ts';

const shed = new WeakSet<object>();

/** A 503 that turns a request away for load before its body is read: audited as a refusal, unlike a fault. */
export function refusedForLoad<E extends object>(err: E): E {
  shed.add(err);
  return err;
}

export function isRefusedForLoad(err: unknown): boolean {
  return typeof err === 'object' && err !== null && shed.has(err);
}

type Writer = (ctx: GatewayContext, request: FastifyRequest, refusal: ErrorDecision) => Promise<unknown>;

const WRITERS: Record<RefusalAuditType, Writer> = {
  // Refused before the envelope was opened: the peer is anonymous; the digest only when the body was read.
  'inbox.refused': (ctx, request, r) =>
    auditEarlyRefusal(
      ctx,
      new GatewayError(r.code, 'refused before opening'),
      typeof request.body === 'string' ? request.body : undefined,
      { remoteAddress: request.ip },
    ),
  'intake.refused': (ctx, request, r) =>
    auditIntakeRefusal(ctx.pool, request.principal?.clientId, r.code, r.status, request.routeOptions.url ?? ''),
};

/**
 * One hook audits the refusals of every route that declares `refusalAudit`,
 * from the code the error handler kept on the reply. Refusals a pipeline or
 * the auth guard already audited are not written twice; 5xx are faults, not
 * refusals (except a 503 that turned a request away for load before its body
 * was read); throttled requests are not audited (a row per request of a flood
 * would amplify it).
 */
export function installRefusalAudit(app: FastifyInstance, ctx: GatewayContext): void {
  app.addHook('onSend', async (request, reply) => {
    const type = request.routeOptions.config.refusalAudit;
    const refusal = reply.gatewayError;
    if (!type || !refusal || refusal.audited || (refusal.status >= 500 && !refusal.shed)) return;
    if (refusal.code === 'RATE_LIMITED') return;
    await keepRefusal(ctx.logger, type, () => WRITERS[type](ctx, request, refusal));
  });
}

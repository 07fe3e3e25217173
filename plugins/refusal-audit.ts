import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { GatewayContext } from '../src/gateway-context.ts';
import { GatewayError } from '../src/errors.ts';
import { auditRefusal, keepRefusal } from '../src/auth/audit.ts';
import { auditEarlyRefusal } from '../src/inbound/receive.ts';
import { auditIntakeRefusal } from '../src/outbound/intake.ts';
import { auditEvidenceRefusal } from '../src/evidence/serve.ts';
import { auditProcessedRefusal } from '../src/outbound/answers/processed-receipts.ts';
import { auditSubscriptionRefusal } from '../src/notify/subscription-store.ts';
import { INVALID_VALUE_AUDIT, type ErrorDecision, type RefusalAuditType } from './route-policy.ts';

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

const WRITERS: Record<RefusalAuditType | typeof INVALID_VALUE_AUDIT, Writer> = {
  // Refused before the envelope was opened: the peer is anonymous; the digest only when the body was read.
  'inbox.refused': (ctx, request, r) =>
    auditEarlyRefusal(
      ctx,
      new GatewayError(r.code, 'refused before opening'),
      typeof request.body === 'string' ? request.body : undefined,
      { remoteAddress: request.ip },
    ),
  'evidence.refused': (ctx, request, r) => auditEvidenceRefusal(ctx, r.code, r.status, { remoteAddress: request.ip }),
  'processed-receipt.refused': (ctx, request, r) =>
    auditProcessedRefusal(ctx, r, typeof request.body === 'string' ? request.body : undefined, undefined, {
      remoteAddress: request.ip,
    }),
  'intake.refused': (ctx, request, r) =>
    auditIntakeRefusal(
      ctx.pool,
      request.principal?.clientId,
      r.code,
      r.status,
      request.routeOptions.url ?? '',
      request.ip,
    ),
  'subscription.refused': (ctx, request, r) =>
    auditSubscriptionRefusal(ctx.pool, {
      clientId: request.principal?.clientId,
      code: r.code,
      status: r.status,
      method: request.method,
      remoteAddress: request.ip,
    }),
  // Ids and parameter names only: the refused value itself may be anything and is never written.
  [INVALID_VALUE_AUDIT]: (ctx, request, r) =>
    auditRefusal(
      ctx.pool,
      ctx.logger,
      INVALID_VALUE_AUDIT,
      { clientId: request.principal?.clientId, user: request.auditUser, remoteAddress: request.ip },
      {
        reason: r.code,
        status: r.status,
        route: request.routeOptions.url ?? null,
        method: request.method,
        parameter: r.expression ?? null,
      },
    ),
};

/** On a FHIR route, a format or version it does not speak is a bad input too. */
const FHIR_FORMAT_REFUSALS = new Set<string>(['NOT_ACCEPTABLE', 'UNSUPPORTED_MEDIA_TYPE']);

/** The route's own refusal audit; elsewhere an invalid value (INVALID_VALUE) is audited as request.refused. */
function refusalAuditOf(request: FastifyRequest, refusal: ErrorDecision) {
  const config = request.routeOptions.config;
  const invalid = refusal.code === 'INVALID_VALUE' || (config?.fhir === true && FHIR_FORMAT_REFUSALS.has(refusal.code));
  return config?.refusalAudit ?? (invalid ? INVALID_VALUE_AUDIT : undefined);
}

/**
 * Audit one refusal decision. Not when a pipeline or the auth guard already
 * did, nor for 5xx (faults, not refusals, except a 503 that turned a request
 * away for load before its body was read), nor when throttled (a row per
 * request of a flood would amplify it).
 */
async function auditDecision(ctx: GatewayContext, request: FastifyRequest, refusal: ErrorDecision | null) {
  const type = refusal ? refusalAuditOf(request, refusal) : undefined;
  if (!type || !refusal || refusal.audited || refusal.code === 'RATE_LIMITED') return;
  if (refusal.status >= 500 && !refusal.shed) return;
  await keepRefusal(ctx.logger, type, () => WRITERS[type](ctx, request, refusal));
}

/**
 * One hook audits the refusals of every route that declares `refusalAudit`,
 * and the invalid values refused on any other route, from the code the error
 * handler kept on the reply.
 */
export function installRefusalAudit(app: FastifyInstance, ctx: GatewayContext): void {
  app.addHook('onSend', async (request, reply) => auditDecision(ctx, request, reply.gatewayError));
}

/** The router refuses some requests before any route, and so before any hook: audited here, before the answer. */
export function auditRouterRefusal(ctx: GatewayContext, request: FastifyRequest, err: GatewayError): Promise<void> {
  return auditDecision(ctx, request, {
    code: err.code,
    status: err.status,
    audited: false,
    expression: err.expression?.[0],
    shed: false,
  });
}

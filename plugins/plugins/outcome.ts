import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { toErrorReply } from '../error-reply.ts';
import { operationOutcome } from '../../src/fhir/outcome.ts';
import { isRefusalAudited } from '../../src/auth/audit.ts';
import { isRefusedForLoad } from '../refusal-audit.ts';
import { GatewayError } from '../../src/errors.ts';
import '../route-policy.ts';
import '../fhir-rest.ts';

/** Answer a failed request with its OperationOutcome, and keep the decision for the hooks after it. */
export function replyWithError(err: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const r = toErrorReply(err, request.id);
  if (r.serverFault) request.log.error({ err }, 'request failed');
  else request.log.info({ status: r.status, code: r.code }, 'request refused');
  // The refusal-audit hook (plugins/refusal-audit.ts) reads the decision here, in onSend.
  reply.gatewayError = {
    code: r.code,
    status: r.status,
    audited: isRefusalAudited(err),
    expression: r.outcome.issue[0]?.expression?.[0],
    shed: isRefusedForLoad(err),
  };
  if (r.retryAfter !== undefined) reply.header('Retry-After', String(r.retryAfter));
  return reply.code(r.status).type('application/fhir+json').send(r.outcome);
}

/** Every error and every unknown route becomes a FHIR OperationOutcome. */
export default fp(
  async (app) => {
    app.decorateReply('gatewayError', null);
    app.setErrorHandler((err, request, reply) => replyWithError(err, request, reply));
    app.setNotFoundHandler((request, reply) => {
      const path = request.url.split('?')[0] ?? '';
      // A FHIR path with another method: 405 and what it does answer (plugins/fhir-rest.ts).
      const allow = request.server.hasDecorator('fhirRoutes')
        ? request.server.fhirRoutes.allowedMethods(path)
        : undefined;
      if (allow) {
        reply.header('Allow', allow.join(', '));
        return replyWithError(
          new GatewayError('METHOD_NOT_ALLOWED', `${path} answers ${allow.join(', ')}`),
          request,
          reply,
        );
      }
      return reply
        .code(404)
        .type('application/fhir+json')
        .send(
          operationOutcome({
            code: 'not-found',
            errorCode: 'NOT_FOUND',
            diagnostics: `no route ${request.method} ${path}`,
          }),
        );
    });
  },
  { name: 'outcome', fastify: '5.x' },
);

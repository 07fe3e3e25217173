import type { FastifyReply } from 'fastify';
import { operationOutcome } from '../../src/fhir/outcome.ts';

/** 202 for an accepted submission: where its delivery state is, and an informational OperationOutcome. */
export function replyAccepted(reply: FastifyReply, location: string, diagnostics: string): FastifyReply {
  return reply
    .code(202)
    .header('Content-Location', location)
    .header('Location', location)
    .type('application/fhir+json')
    .send(operationOutcome({ severity: 'information', code: 'informational', diagnostics }));
}

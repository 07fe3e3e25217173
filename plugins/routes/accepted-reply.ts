import type { FastifyReply } from 'fastify';
import { operationOutcome } from '../../src/fhir/outcome.ts';
import type { ReturnPreference } from '../../src/fhir/rest/prefer.ts';

/**
 * 202 for an accepted submission: where its delivery state is, and an
 * informational OperationOutcome. `Prefer: return=minimal` drops the body;
 * `return=OperationOutcome` is the default. No FHIR resource exists yet for
 * `return=representation` (delivery is asynchronous), so it gets the
 * OperationOutcome too, and Preference-Applied does not claim it.
 */
export function replyAccepted(
  reply: FastifyReply,
  location: string,
  diagnostics: string,
  prefer?: ReturnPreference,
): FastifyReply {
  reply.code(202).header('Content-Location', location).header('Location', location);
  if (prefer === 'minimal') return reply.header('Preference-Applied', 'return=minimal').send();
  if (prefer === 'OperationOutcome') reply.header('Preference-Applied', 'return=OperationOutcome');
  return reply
    .type('application/fhir+json')
    .send(operationOutcome({ severity: 'information', code: 'informational', diagnostics }));
}

import type { Task } from 'graphile-worker';
import type { GatewayContext } from '../../gateway-context.ts';
import { GatewayError } from '../../errors.ts';
import { forward, type ForwardAnswerHandler } from '../../inbound/forward.ts';
import { acceptSubmission, auditIntakeRefusal, IntakeWriter } from '../../outbound/intake.ts';
import { LOCAL_FHIR_CLIENT, responseAnswer } from '../../outbound/response-routing.ts';
import { assertForwardPayload } from '../../queue/jobs.ts';
import { messageResponse, RESPONSE_IDENTIFIER_EXPRESSION } from '../../fhir/message-header.ts';

/**
 * The local EHR's synchronous answer to a forwarded message: a response
 * message naming it goes back to the partner through the outbound pipeline,
 * submitted as LOCAL_FHIR_CLIENT; anything else is left alone. A refused
 * response is audited like any refused submission, and the forward stands.
 */
function routeBack(ctx: GatewayContext, writer: IntakeWriter): ForwardAnswerHandler {
  return async (answer, forwarded) => {
    const bundle = responseAnswer(answer, ctx.config.jsonMaxDepth);
    if (!bundle) return;
    try {
      // Only an answer to the forwarded message goes back; the EHR sends anything else itself, through intake.
      if (messageResponse(bundle)?.identifier !== forwarded.messageHeaderId)
        throw new GatewayError('RESPONSE_UNMATCHED', 'the answer responds to another message than the one forwarded', {
          expression: RESPONSE_IDENTIFIER_EXPRESSION,
        });
      await acceptSubmission(ctx, writer, {
        clientId: LOCAL_FHIR_CLIENT,
        raw: answer,
        bundle,
        recipients: { from: 'message' },
        answered: async (headerId) =>
          headerId === forwarded.messageHeaderId
            ? {
                messageId: forwarded.id,
                sender: forwarded.sender,
                delivery: forwarded.jti,
                exchange: forwarded.exchangeId,
              }
            : undefined,
      });
    } catch (err) {
      if (!(err instanceof GatewayError) || err.status >= 500) throw err;
      await auditIntakeRefusal(ctx.pool, LOCAL_FHIR_CLIENT, err.code, err.status, 'inbox-forward');
    }
  };
}

/** Forward one received message to LOCAL_FHIR_BASE_URL; a throw makes graphile-worker retry with backoff. */
export function inboxForwardTask(ctx: GatewayContext): Task {
  const writer = new IntakeWriter(ctx.pool);
  const onAnswer = routeBack(ctx, writer);
  return async (payload, helpers) => {
    const { messageId } = assertForwardPayload(payload);
    await forward(ctx, messageId, helpers.job.attempts, onAnswer);
  };
}

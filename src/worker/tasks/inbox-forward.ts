import type { Task } from 'graphile-worker';
import { forward, type ForwardContext } from '../../inbound/forward.ts';

import { assertForwardPayload } from '../../queue/jobs.ts';

/** Forward one received message to LOCAL_FHIR_BASE_URL; a throw makes graphile-worker retry with backoff. */
export function inboxForwardTask(ctx: ForwardContext): Task {
  return async (payload, helpers) => {
    const { messageId } = assertForwardPayload(payload);
    await forward(ctx, messageId, helpers.job.attempts);
  };
}

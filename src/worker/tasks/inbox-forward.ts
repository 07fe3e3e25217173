import type { Task } from 'graphile-worker';
import { forward, type ForwardContext } from '../../inbound/forward.ts';
import { isUuid } from '../../ids.ts';

/** Payload: { messageId } and nothing else (never content). */
export function assertForwardPayload(payload: unknown): { messageId: string } {
  if (!payload || typeof payload !== 'object' || Array.isArray(payload))
    throw new Error('inbox-forward: payload must be an object');
  const id = (payload as { messageId?: unknown }).messageId;
  if (Object.keys(payload).length !== 1 || typeof id !== 'string' || !isUuid(id))
    throw new Error('inbox-forward: payload must be exactly { messageId: <uuid> }');
  return { messageId: id };
}

/** Forward one received message to LOCAL_FHIR_BASE_URL; a throw makes graphile-worker retry with backoff. */
export function inboxForwardTask(ctx: ForwardContext): Task {
  return async (payload, helpers) => {
    const { messageId } = assertForwardPayload(payload);
    await forward(ctx, messageId, helpers.job.attempts);
  };
}

import type { Task } from 'graphile-worker';
import type { DeliveryContext } from '../../outbound/deliver.ts';
import { deliver } from '../../outbound/deliver.ts';
import { isUuid } from '../../ids.ts';

/** Payload: { deliveryId } and nothing else (never content). */
export function assertDeliverPayload(payload: unknown): { deliveryId: string } {
  if (!payload || typeof payload !== 'object' || Array.isArray(payload))
    throw new Error('deliver: payload must be an object');
  const keys = Object.keys(payload);
  const id = (payload as { deliveryId?: unknown }).deliveryId;
  if (keys.length !== 1 || typeof id !== 'string' || !isUuid(id))
    throw new Error('deliver: payload must be exactly { deliveryId: <uuid> }');
  return { deliveryId: id };
}

export function deliverTask(ctx: DeliveryContext): Task {
  return async (payload) => {
    const { deliveryId } = assertDeliverPayload(payload);
    await deliver(ctx, deliveryId);
  };
}

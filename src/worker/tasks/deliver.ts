import type { Task } from 'graphile-worker';
import type { DeliveryContext } from '../../outbound/deliver.ts';
import { assertDeliverPayload } from '../../queue/jobs.ts';

export { assertDeliverPayload } from '../../queue/jobs.ts';

/** A delivery task of either kind: the payload is { deliveryId } only (never content). */
export function deliveryTask(
  ctx: DeliveryContext,
  deliverOne: (ctx: DeliveryContext, deliveryId: string) => Promise<unknown>,
): Task {
  return async (payload) => {
    const { deliveryId } = assertDeliverPayload(payload);
    await deliverOne(ctx, deliveryId);
  };
}

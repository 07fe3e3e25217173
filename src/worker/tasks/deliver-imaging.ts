import type { Task } from 'graphile-worker';
import type { DeliveryContext } from '../../outbound/deliver.ts';
import { deliverImaging } from '../../outbound/imaging/deliver.ts';
import { assertDeliverPayload } from './deliver.ts';

/** Payload: { deliveryId } and nothing else (never content), as for bundle deliveries. */
export function deliverImagingTask(ctx: DeliveryContext): Task {
  return async (payload) => {
    const { deliveryId } = assertDeliverPayload(payload);
    await deliverImaging(ctx, deliveryId);
  };
}

import type { Task } from 'graphile-worker';
import { sendNotification, type NotifySendContext } from '../../notify/send.ts';
import { assertNotifyPayload } from '../../queue/jobs.ts';

/** Send one exchange-state notification to the sending EHR; the payload is { notificationId } only. Retries are scheduled by the send itself. */
export function exchangeNotifyTask(ctx: NotifySendContext): Task {
  return async (payload) => {
    const { notificationId } = assertNotifyPayload(payload);
    await sendNotification(ctx, notificationId);
  };
}

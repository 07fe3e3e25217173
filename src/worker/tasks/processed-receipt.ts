import type { Task } from 'graphile-worker';
import { sendProcessedReceipt, type ProcessedSendContext } from '../../inbound/processed-send.ts';
import { assertProcessedReceiptPayload } from '../../queue/jobs.ts';

/** Send one processed receipt to the partner it is owed to; the payload is { receiptId } only. Retries are scheduled by the send itself. */
export function processedReceiptTask(ctx: ProcessedSendContext): Task {
  return async (payload) => {
    const { receiptId } = assertProcessedReceiptPayload(payload);
    await sendProcessedReceipt(ctx, receiptId);
  };
}

import { appendAudit, type AuditInput } from '../audit/append.ts';
import type { Queryable } from '../db/pool.ts';
import { uuidv7 } from '../ids.ts';
import type { ProcessedVia } from '../protocol/wire.ts';
import { enqueueJobs, PROCESSED_RECEIPT_TASK } from '../queue/jobs.ts';

/** The received message whose processing is recorded. */
export interface ProcessedMessage {
  id: string;
  sender: string;
  jti: string;
  envelopeDigest: string;
}

/**
 * Our EHR has taken a received message in (acknowledged it after a pull, or
 * accepted it when forwarded): owe its sender a processed receipt. On the
 * transaction that records the processing, once per message whichever comes
 * first; the row and its job carry ids only, and the job signs and sends it
 * (src/inbound/processed-send.ts).
 */
export async function queueProcessedReceipt(
  db: Queryable,
  m: ProcessedMessage,
  via: ProcessedVia,
  at: Date,
  agent: NonNullable<AuditInput['agent']>,
): Promise<void> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO processed_receipts (id, message_id, partner_id, via, processed_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (message_id) DO NOTHING RETURNING id`,
    [uuidv7(), m.id, m.sender, via, at],
  );
  const id = rows[0]?.id;
  if (!id) return;
  await enqueueJobs(db, PROCESSED_RECEIPT_TASK, [id]);
  await appendAudit(db, [
    {
      type: 'inbox.processed',
      outcome: 'success',
      agent,
      entity: [
        { type: 'inbox-message', id: m.id, digest: m.envelopeDigest },
        { type: 'delivery', id: m.jti },
        { type: 'processed-receipt', id },
      ],
      detail: { via, partner: m.sender },
    },
  ]);
}

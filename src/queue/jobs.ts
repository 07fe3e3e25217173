import type { Queryable } from '../db/pool.ts';
import { isUuid } from '../ids.ts';

/**
 * The jobs catalogue: every queued task id, its payload (ids only, never
 * PHI) and the one job-spec SQL that enqueues it. It sits below the
 * pipelines and the worker: inbound and outbound enqueue through it (so
 * neither imports the other), and the worker runs what it names (so no
 * folder imports the worker back).
 */
export const DELIVER_TASK = 'deliver';
export const DELIVER_IMAGING_TASK = 'deliver_imaging';
export const FORWARD_TASK = 'inbox-forward';
export const PROCESSED_RECEIPT_TASK = 'processed-receipt';
export const NOTIFY_TASK = 'exchange-notify';

/** Graphile-worker's own retries are only a safety net: the delivery tasks schedule their retries themselves. */
export const SAFETY_NET_ATTEMPTS = 25;

/** Each job's payload is one id under this name. */
const PAYLOAD_FIELD = {
  [DELIVER_TASK]: 'deliveryId',
  [DELIVER_IMAGING_TASK]: 'deliveryId',
  [FORWARD_TASK]: 'messageId',
  [PROCESSED_RECEIPT_TASK]: 'receiptId',
  [NOTIFY_TASK]: 'notificationId',
} as const;

/** A job key per task and id: a forward's, a processed receipt's and a notification's are prefixed, so they never collide with a delivery's. */
const JOB_KEY_PREFIX = {
  [DELIVER_TASK]: '',
  [DELIVER_IMAGING_TASK]: '',
  [FORWARD_TASK]: 'inbox-forward:',
  [PROCESSED_RECEIPT_TASK]: 'processed-receipt:',
  [NOTIFY_TASK]: 'exchange-notify:',
} as const;

export type IdJobTask = keyof typeof PAYLOAD_FIELD;

/**
 * The job specs for graphile_worker.add_jobs, one per id in `ids` (an SQL
 * expression yielding uuid rows): payload = { <field>: id } only. The
 * statement binds $1 task, $2 max attempts, $3 run_at.
 */
export function jobSpecsSql(task: IdJobTask, ids: string): string {
  return `(SELECT array_agg(ROW($1::text, json_build_object('${PAYLOAD_FIELD[task]}', j.id), NULL::text, $3::timestamptz, $2::int, '${JOB_KEY_PREFIX[task]}' || j.id::text, NULL::int, NULL::text[])::graphile_worker.job_spec) FROM ${ids} AS j(id))`;
}

/** Queue one job per id on the caller's connection or transaction. */
export async function enqueueJobs(
  db: Queryable,
  task: IdJobTask,
  ids: string[],
  options: { maxAttempts?: number; runAt?: Date | null } = {},
): Promise<void> {
  if (ids.length === 0) return;
  await db.query(`SELECT count(*) FROM graphile_worker.add_jobs(${jobSpecsSql(task, 'unnest($4::uuid[])')})`, [
    task,
    options.maxAttempts ?? SAFETY_NET_ATTEMPTS,
    options.runAt ?? null,
    ids,
  ]);
}

/** A job's payload, asserted: exactly { <field>: <uuid> } and nothing else (never content). */
export function assertIdPayload<F extends string>(task: string, field: F, payload: unknown): Record<F, string> {
  if (!payload || typeof payload !== 'object' || Array.isArray(payload))
    throw new Error(`${task}: payload must be an object`);
  const id = (payload as Record<string, unknown>)[field];
  if (Object.keys(payload).length !== 1 || typeof id !== 'string' || !isUuid(id))
    throw new Error(`${task}: payload must be exactly { ${field}: <uuid> }`);
  return { [field]: id } as Record<F, string>;
}

export const assertDeliverPayload = (payload: unknown) => assertIdPayload('deliver', 'deliveryId', payload);
export const assertForwardPayload = (payload: unknown) => assertIdPayload(FORWARD_TASK, 'messageId', payload);
export const assertProcessedReceiptPayload = (payload: unknown) =>
  assertIdPayload(PROCESSED_RECEIPT_TASK, 'receiptId', payload);
export const assertNotifyPayload = (payload: unknown) => assertIdPayload(NOTIFY_TASK, 'notificationId', payload);

import { existsSync } from 'node:fs';
import type pg from 'pg';
import { DELIVER_IMAGING_TASK, DELIVER_TASK, enqueueJobs } from '../queue/jobs.ts';
import type { AttemptLedger } from './attempt-ledger.ts';

export type DeliveryKind = 'bundle' | 'imaging';

/** A delivery row as the operator retry reads it. */
export interface RetryRow {
  state: string;
  exchange_id: string;
  content_path?: string;
}

/**
 * The two kinds of delivery share their state and retry-round columns, so
 * one attempt ledger, one operator view and one retry serve both. Only the
 * job, the tables, the exchange entity and what must still exist to send
 * again differ.
 */
export interface DeliveryKindSpec extends AttemptLedger {
  kind: DeliveryKind;
  task: typeof DELIVER_TASK | typeof DELIVER_IMAGING_TASK;
  /** The columns the operator retry reads. */
  retryColumns: string;
  /** Why the stored sealed content can no longer be sent, if it cannot. */
  unsendable(row: RetryRow): string | undefined;
}

const enqueueFor =
  (task: DeliveryKindSpec['task']) =>
  (db: Pick<pg.PoolClient, 'query'>, ids: string[], runAt: Date | null = null): Promise<void> =>
    enqueueJobs(db, task, ids, { runAt });

export const DELIVERY_KINDS: Record<DeliveryKind, DeliveryKindSpec> = {
  bundle: {
    kind: 'bundle',
    task: DELIVER_TASK,
    table: 'deliveries',
    attemptsTable: 'delivery_attempts',
    exchangeTable: 'exchanges',
    exchangeEntity: 'exchange',
    detail: {},
    retryColumns: 'state, exchange_id',
    enqueue: enqueueFor(DELIVER_TASK),
    unsendable: () => undefined,
  },
  imaging: {
    kind: 'imaging',
    task: DELIVER_IMAGING_TASK,
    table: 'imaging_deliveries',
    attemptsTable: 'imaging_delivery_attempts',
    exchangeTable: 'imaging_exchanges',
    exchangeEntity: 'imaging-exchange',
    detail: { content: 'imaging' },
    retryColumns: 'state, exchange_id, content_path',
    enqueue: enqueueFor(DELIVER_IMAGING_TASK),
    // The envelope of a bundle lives in its row; imaging content lives in a file that may have been removed.
    unsendable: (r) =>
      r.content_path && existsSync(r.content_path)
        ? undefined
        : 'its sealed content file is gone; send the study again',
  },
};

import type { TaskList } from 'graphile-worker';
import type { GatewayContext } from '../gateway-context.ts';
import { AUDIT_CHECKPOINT_CRON, AUDIT_CHECKPOINT_TASK, auditCheckpointTask } from './tasks/audit-checkpoint.ts';
import { deliver, type DeliveryContext } from '../outbound/deliver.ts';
import { DELIVERY_KINDS, type DeliveryKind } from '../outbound/delivery-kinds.ts';
import { deliverImaging } from '../outbound/imaging/deliver.ts';
import { FORWARD_TASK, NOTIFY_TASK, PROCESSED_RECEIPT_TASK } from '../queue/jobs.ts';
import { exchangeNotifyTask } from './tasks/exchange-notify.ts';
import { deliveryTask } from './tasks/deliver.ts';
import { inboxForwardTask } from './tasks/inbox-forward.ts';
import { processedReceiptTask } from './tasks/processed-receipt.ts';
import {
  SUBSCRIPTION_HEARTBEAT_CRON,
  SUBSCRIPTION_HEARTBEAT_TASK,
  subscriptionHeartbeatTask,
} from './tasks/subscription-heartbeat.ts';
import { RETENTION_PURGE_CRON, RETENTION_PURGE_TASK, retentionPurgeTask } from './tasks/retention.ts';
import {
  PARTNER_EVIDENCE_CRON,
  PARTNER_EVIDENCE_SWEEP_TASK,
  PARTNER_EVIDENCE_TASK,
  partnerEvidenceSweepTask,
  partnerEvidenceTask,
} from './tasks/partner-evidence.ts';
import {
  KEYS_ROTATE_CRON,
  KEYS_ROTATE_TASK,
  PARTNER_KEYS_REFRESH_CRON,
  PARTNER_KEYS_REFRESH_TASK,
  keysRotateTask,
  partnerKeysRefreshTask,
} from './tasks/keys.ts';

/** What sends one delivery of each kind (the kinds' tasks and tables are in DELIVERY_KINDS). */
const DELIVER_ONE: Record<DeliveryKind, (ctx: DeliveryContext, deliveryId: string) => Promise<unknown>> = {
  bundle: deliver,
  imaging: deliverImaging,
};

/**
 * Every graphile-worker task. Payloads carry ids only (never PHI); each task
 * asserts its payload's shape and calls a pipeline in src/exchange or src/keys.
 */
export function taskList(ctx: GatewayContext): TaskList {
  return {
    [AUDIT_CHECKPOINT_TASK]: auditCheckpointTask(ctx),
    ...Object.fromEntries(Object.values(DELIVERY_KINDS).map((k) => [k.task, deliveryTask(ctx, DELIVER_ONE[k.kind])])),
    [FORWARD_TASK]: inboxForwardTask(ctx),
    [PROCESSED_RECEIPT_TASK]: processedReceiptTask(ctx),
    [NOTIFY_TASK]: exchangeNotifyTask(ctx),
    [KEYS_ROTATE_TASK]: keysRotateTask(ctx),
    [PARTNER_KEYS_REFRESH_TASK]: partnerKeysRefreshTask(ctx),
    [PARTNER_EVIDENCE_SWEEP_TASK]: partnerEvidenceSweepTask(ctx),
    [PARTNER_EVIDENCE_TASK]: partnerEvidenceTask(ctx),
    [RETENTION_PURGE_TASK]: retentionPurgeTask(ctx),
    [SUBSCRIPTION_HEARTBEAT_TASK]: subscriptionHeartbeatTask(ctx),
  };
}

/** Recurring jobs (graphile-worker crontab syntax). */
export function crontab(_ctx: GatewayContext): string {
  return [
    AUDIT_CHECKPOINT_CRON,
    KEYS_ROTATE_CRON,
    PARTNER_KEYS_REFRESH_CRON,
    PARTNER_EVIDENCE_CRON,
    RETENTION_PURGE_CRON,
    SUBSCRIPTION_HEARTBEAT_CRON,
  ].join('\n');
}

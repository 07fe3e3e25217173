import type { TaskList } from 'graphile-worker';
import type { GatewayContext } from '../gateway-context.ts';
import { AUDIT_CHECKPOINT_CRON, AUDIT_CHECKPOINT_TASK, auditCheckpointTask } from './tasks/audit-checkpoint.ts';
import { DELIVER_TASK } from '../outbound/intake-store.ts';
import { deliverTask } from './tasks/deliver.ts';
import { FORWARD_TASK } from '../inbound/forward.ts';
import { inboxForwardTask } from './tasks/inbox-forward.ts';
import { DELIVER_IMAGING_TASK } from '../outbound/imaging/store.ts';
import { deliverImagingTask } from './tasks/deliver-imaging.ts';
import {
  KEYS_ROTATE_CRON,
  KEYS_ROTATE_TASK,
  PARTNER_KEYS_REFRESH_CRON,
  PARTNER_KEYS_REFRESH_TASK,
  keysRotateTask,
  partnerKeysRefreshTask,
} from './tasks/keys.ts';

/**
 * Every graphile-worker task. Payloads carry ids only (never PHI); each task
 * asserts its payload's shape and calls a pipeline in src/exchange or src/keys.
 */
export function taskList(ctx: GatewayContext): TaskList {
  return {
    [AUDIT_CHECKPOINT_TASK]: auditCheckpointTask(ctx),
    [DELIVER_TASK]: deliverTask(ctx),
    [FORWARD_TASK]: inboxForwardTask(ctx),
    [DELIVER_IMAGING_TASK]: deliverImagingTask(ctx),
    [KEYS_ROTATE_TASK]: keysRotateTask(ctx),
    [PARTNER_KEYS_REFRESH_TASK]: partnerKeysRefreshTask(ctx),
  };
}

/** Recurring jobs (graphile-worker crontab syntax). */
export function crontab(_ctx: GatewayContext): string {
  return [AUDIT_CHECKPOINT_CRON, KEYS_ROTATE_CRON, PARTNER_KEYS_REFRESH_CRON].join('\n');
}

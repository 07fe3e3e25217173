import type { Task } from 'graphile-worker';
import type { GatewayContext } from '../../gateway-context.ts';
import { issueCheckpoint } from '../../audit/checkpoint.ts';

export const AUDIT_CHECKPOINT_TASK = 'audit_checkpoint';

/** Every minute (and on demand): sign a checkpoint if the audit log grew. The payload is ignored. */
export function auditCheckpointTask(ctx: GatewayContext): Task {
  return async () => {
    const cp = await issueCheckpoint(ctx);
    if (cp) ctx.logger.debug({ seq: cp.seq, size: cp.treeSize }, 'audit checkpoint');
  };
}

/** graphile-worker crontab line: at least one checkpoint per minute while entries arrive. */
export const AUDIT_CHECKPOINT_CRON = `* * * * * ${AUDIT_CHECKPOINT_TASK} ?max=1&jobKey=audit_checkpoint`;

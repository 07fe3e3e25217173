import type { Task } from 'graphile-worker';
import type { GatewayContext } from '../../gateway-context.ts';
import { purgeExpired } from '../../retention/purge.ts';

export const RETENTION_PURGE_TASK = 'retention_purge';

/** Every ten minutes: purge the content past RETENTION_* in bounded batches. The payload is ignored. */
export function retentionPurgeTask(ctx: GatewayContext): Task {
  return async (_payload, helpers) => {
    await purgeExpired(ctx, { signal: helpers.abortSignal });
  };
}

/**
 * graphile-worker crontab line: one run at a time across every worker (the
 * job key); a run that finds nothing due costs one indexed query per kind.
 */
export const RETENTION_PURGE_CRON = `*/10 * * * * ${RETENTION_PURGE_TASK} ?max=1&jobKey=retention_purge`;

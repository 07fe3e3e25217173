import type { Task } from 'graphile-worker';
import type { GatewayContext } from '../../gateway-context.ts';
import { queueDueHeartbeats } from '../../notify/heartbeat.ts';

export const SUBSCRIPTION_HEARTBEAT_TASK = 'subscription_heartbeat';

/** Every minute: queue the heartbeats that are due (each is sent by the exchange-notify job). The payload is ignored. */
export function subscriptionHeartbeatTask(ctx: Pick<GatewayContext, 'pool' | 'logger'>): Task {
  return async () => {
    const queued = await queueDueHeartbeats(ctx.pool);
    if (queued) ctx.logger.info({ queued }, 'subscription heartbeats queued');
  };
}

/** graphile-worker crontab line: one sweep at a time across every worker (the job key). */
export const SUBSCRIPTION_HEARTBEAT_CRON = `* * * * * ${SUBSCRIPTION_HEARTBEAT_TASK} ?max=1&jobKey=subscription_heartbeat`;

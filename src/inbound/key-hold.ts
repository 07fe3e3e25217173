import type { GatewayContext } from '../gateway-context.ts';
import type { StepDeps } from '../keys/rotation-steps.ts';
import { unacknowledgedSealedTo } from './inbox-store.ts';

/**
 * Given to key rotation as its destroy hold, so keys need not know the inbox.
 * Stored inbox envelopes are sealed to our enc key: keep the key until the local EHR has acknowledged them all.
 */
export function inboxHold(ctx: Pick<GatewayContext, 'pool'>): NonNullable<StepDeps['holdDestroy']> {
  return async (key) => {
    if (key.use !== 'enc') return undefined;
    const n = await unacknowledgedSealedTo(ctx.pool, key.kid);
    return n > 0 ? `${n} unacknowledged inbox messages are sealed to it` : undefined;
  };
}

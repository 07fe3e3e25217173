import type { GatewayContext } from '../runtime/gateway-context.ts';
import { unacknowledgedSealedTo } from '../inbound/inbox-store.ts';
import type { StepDeps } from './rotation-steps.ts';

/** Stored inbox envelopes are sealed to our enc key: keep the key until the local EHR has acknowledged them all. */
export function inboxHold(ctx: Pick<GatewayContext, 'pool'>): NonNullable<StepDeps['holdDestroy']> {
  return async (key) => {
    if (key.use !== 'enc') return undefined;
    const n = await unacknowledgedSealedTo(ctx.pool, key.kid);
    return n > 0 ? `${n} unacknowledged inbox messages are sealed to it` : undefined;
  };
}

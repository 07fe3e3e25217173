import type { GatewayContext } from '../gateway-context.ts';
import { required } from '../required.ts';
import type { StepDeps } from '../keys/rotation-steps.ts';
import { unacknowledgedSealedTo } from './inbox-store.ts';

/**
 * Given to key rotation as its destroy hold, so keys need not know the inbox.
 * Stored inbox envelopes are sealed to our enc key: keep the key until the local EHR has acknowledged them all.
 */
export function inboxHold(ctx: Pick<GatewayContext, 'pool'>): NonNullable<StepDeps['holdDestroy']> {
  return async (key) => {
    if (key.use === 'pq-enc') {
      const n = await unacknowledgedSince(ctx.pool, key.published_at ?? key.created_at);
      return n > 0 ? `${n} unacknowledged inbox messages arrived while it was published` : undefined;
    }
    if (key.use !== 'enc') return undefined;
    const n = await unacknowledgedSealedTo(ctx.pool, key.kid);
    return n > 0 ? `${n} unacknowledged inbox messages are sealed to it` : undefined;
  };
}

/**
 * A message records the EC kid it was sealed to, not the ML-KEM kid of a v2
 * envelope: an ML-KEM key is kept while any message received since it was
 * published is unacknowledged (none sealed to it can be older).
 */
async function unacknowledgedSince(db: Pick<GatewayContext, 'pool'>['pool'], since: Date): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM inbox_messages WHERE received_at >= $1 AND state <> 'acknowledged' AND purged_at IS NULL`,
    [since],
  );
  return required(rows[0], 'count(*) returns one row').n;
}

import type { Task } from 'graphile-worker';
import type { GatewayContext } from '../../gateway-context.ts';
import { refreshPartnerKeys } from '../../directory/partner-refresh.ts';
import { rotateDue, rotateUse, rotationPolicies, type RotationRun } from '../../keys/rotation.ts';
import type { StepDeps } from '../../keys/rotation-steps.ts';
import { KEY_USES, type KeyUse } from '../../keys/store.ts';
import { inboxHold } from '../../inbound/key-hold.ts';

export const KEYS_ROTATE_TASK = 'keys_rotate';
export const PARTNER_KEYS_REFRESH_TASK = 'partner_keys_refresh';

/** Every minute: cheap check of what is due (two small queries per use), then the due steps. */
export const KEYS_ROTATE_CRON = `* * * * * ${KEYS_ROTATE_TASK} ?max=1&jobKey=keys_rotate_cron`;
/** Every minute: refetch the partners whose PARTNER_JWKS_REFRESH interval has passed. */
export const PARTNER_KEYS_REFRESH_CRON = `* * * * * ${PARTNER_KEYS_REFRESH_TASK} ?max=1&jobKey=partner_keys_refresh_cron`;

/** A manual rotation (gateway keys rotate): ids and flags only. */
export interface RotatePayload {
  use: KeyUse;
  now: boolean;
  requestedBy: string;
}

export function parseRotatePayload(payload: unknown): RotatePayload | undefined {
  if (!payload || typeof payload !== 'object' || !('use' in payload)) return undefined; // the cron's own payload
  const p = payload as Record<string, unknown>;
  if (
    !KEY_USES.includes(p.use as KeyUse) ||
    typeof p.now !== 'boolean' ||
    typeof p.requestedBy !== 'string' ||
    p.requestedBy.length > 200
  ) {
    throw new Error('keys_rotate payload must be {use: sig|enc|audit|blinding, now: boolean, requestedBy: string}');
  }
  return { use: p.use as KeyUse, now: p.now, requestedBy: p.requestedBy };
}

/** Run the rotation and make this process use the new keys at once (others reload within KEYRING_MAX_AGE_MS). */
export async function runKeysRotate(
  ctx: Pick<GatewayContext, 'pool' | 'hsm' | 'keyring' | 'config' | 'logger'>,
  payload: unknown,
  deps: Partial<StepDeps> = {},
): Promise<RotationRun[]> {
  const manual = parseRotatePayload(payload);
  const policies = rotationPolicies(ctx.config);
  const base: StepDeps = {
    pool: ctx.pool,
    hsm: ctx.hsm,
    actor: { type: 'gateway', id: ctx.config.org },
    holdDestroy: inboxHold(ctx),
    ...deps,
  };
  const runs = manual
    ? [
        await rotateUse(
          {
            ...base,
            actor: { type: manual.requestedBy.startsWith('cli:') ? 'user' : 'admin', id: manual.requestedBy },
          },
          manual.use,
          policies[manual.use],
          { request: { now: manual.now }, wait: true },
        ),
      ]
    : await rotateDue(base, policies);
  if (runs.some((r) => r.steps.length)) {
    await ctx.keyring.reload();
    ctx.logger.info(
      { steps: runs.flatMap((r) => r.steps.map((s) => `${s.kind} ${s.use}${'kid' in s ? ` ${s.kid}` : ''}`)) },
      'key rotation',
    );
  }
  return runs;
}

export function keysRotateTask(ctx: GatewayContext): Task {
  return async (payload) => {
    await runKeysRotate(ctx, payload);
  };
}

export function partnerKeysRefreshTask(ctx: GatewayContext): Task {
  return async () => {
    await refreshPartnerKeys(ctx);
  };
}

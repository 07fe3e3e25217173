import type { FastifyPluginAsync } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { required } from '../../src/required.ts';
import { requireScope, SCOPE_ADMIN } from '../guard.ts';
import { keyHistory } from '../../src/keys/history.ts';
import { rotationPolicies } from '../../src/keys/rotation.ts';
import { destroyAfter } from '../../src/keys/policy.ts';
import { listIntents, listKeys, type KeyUse } from '../../src/keys/store.ts';
import { inboxHold } from '../../src/inbound/key-hold.ts';
import { partnerKeyLog } from '../../src/directory/partner-key-log.ts';

/**
 * GET /admin/keys: the full key inventory and history (every state and time,
 * public keys, when each retired key is due for destruction, unfinished
 * rotation steps). GET /admin/partner-keys: the partner key-transparency log.
 */
export function adminKeyRoutes(ctx: GatewayContext): FastifyPluginAsync {
  return async (app) => {
    const guard = requireScope(ctx, SCOPE_ADMIN);
    app.get('/admin/keys', { preHandler: guard }, async (_req, reply) => {
      const policies = rotationPolicies(ctx.config);
      const hold = inboxHold(ctx);
      const rows = new Map((await listKeys(ctx.pool)).map((r) => [r.kid, r]));
      const keys = [];
      for (const k of await keyHistory(ctx.pool)) {
        const due =
          k.state === 'deactivated'
            ? destroyAfter(
                {
                  kid: k.kid,
                  state: 'deactivated',
                  published_at: null,
                  activated_at: null,
                  deactivated_at: new Date(
                    required(k.deactivated ?? undefined, 'a deactivation time on a deactivated key'),
                  ),
                },
                policies[k.use as KeyUse],
              )
            : undefined;
        const held =
          k.state === 'deactivated'
            ? await hold(required(rows.get(k.kid), 'a key row for each key in the history'))
            : undefined;
        keys.push({
          ...k,
          ...(due ? { destroy_after: due.toISOString() } : {}),
          ...(held ? { destroy_held: held } : {}),
        });
      }
      const pending = (await listIntents(ctx.pool)).map((i) => ({
        use: i.use,
        action: i.action,
        kid: i.kid,
        started: i.started_at.toISOString(),
      }));
      return reply.header('Cache-Control', 'no-store').send({ keys, pending });
    });
    app.get('/admin/partner-keys', { preHandler: guard }, async (_req, reply) => {
      const log = (await partnerKeyLog(ctx.pool)).map((r) => ({
        partner: r.partner_id,
        kid: r.kid,
        thumbprint: r.thumbprint,
        use: r.use,
        jwk: r.jwk,
        first_seen: r.first_seen.toISOString(),
        last_seen: r.last_seen.toISOString(),
        disappeared: r.disappeared_at?.toISOString() ?? null,
        replaced: r.replaced_at?.toISOString() ?? null,
      }));
      return reply.header('Cache-Control', 'no-store').send({ keys: log });
    });
  };
}

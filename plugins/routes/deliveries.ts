import type { FastifyPluginAsync } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { requireScope, SCOPE_ADMIN } from '../guard.ts';
import { listDeliveries, retryDelivery } from '../../src/outbound/delivery-admin.ts';

const STATES = new Set(['pending', 'delivered', 'failed']);

/** Operator view of deliveries (bundle and imaging) and the manual retry of a failed one. */
export function deliveryRoutes(ctx: GatewayContext): FastifyPluginAsync {
  return async (app) => {
    const admin = requireScope(ctx, SCOPE_ADMIN);
    app.get('/admin/deliveries', { preHandler: admin }, async (req) => {
      const state = (req.query as { state?: string }).state;
      if (state !== undefined && !STATES.has(state))
        throw new GatewayError('INVALID_VALUE', 'state must be pending, delivered or failed', { expression: 'state' });
      return { deliveries: await listDeliveries(ctx.pool, state) };
    });
    app.post<{ Params: { id: string } }>('/admin/deliveries/:id/retry', { preHandler: admin }, async (req, reply) => {
      const kind = await retryDelivery(ctx, req.params.id, {
        type: 'admin',
        id: req.principal?.clientId ?? 'unknown',
        network: req.ip,
      });
      return reply.code(202).send({ delivery: req.params.id, kind, state: 'pending' });
    });
  };
}

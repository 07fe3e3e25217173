import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { requireScope, SCOPE_ADMIN } from '../guard.ts';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { partnerFhir, partnerInput, partnerJson } from '../../src/directory/json.ts';
import type { Partner } from '../../src/directory/directory.ts';

/** Admin CRUD over the partner directory. Responses are JSON; ?format=fhir renders the Organization + Endpoint. */
export function partnerRoutes(ctx: GatewayContext): FastifyPluginAsync {
  return async (app) => {
    const admin = requireScope(ctx, SCOPE_ADMIN);
    const actor = (req: FastifyRequest) => ({
      type: 'admin' as const,
      id: req.principal?.clientId ?? 'unknown',
      network: req.ip,
    });
    const render = (format: unknown): ((p: Partner) => object) => (format === 'fhir' ? partnerFhir : partnerJson);

    app.get('/admin/partners', { preHandler: admin }, async (req) => {
      const partners = await ctx.directory.list();
      return { partners: partners.map(render((req.query as { format?: string }).format)) };
    });
    app.get<{ Params: { id: string } }>('/admin/partners/:id', { preHandler: admin }, async (req) => {
      const p = await ctx.directory.get(req.params.id);
      if (!p) throw new GatewayError('NOT_FOUND', `no partner ${req.params.id}`);
      return render((req.query as { format?: string }).format)(p);
    });
    app.post('/admin/partners', { preHandler: admin }, async (req, reply) => {
      const p = await ctx.directory.add(partnerInput(req.body), actor(req));
      return reply
        .code(201)
        .header('Location', `/admin/partners/${encodeURIComponent(p.id)}`)
        .send(partnerJson(p));
    });
    app.put<{ Params: { id: string } }>('/admin/partners/:id', { preHandler: admin }, async (req) =>
      partnerJson(await ctx.directory.update(partnerInput(req.body, req.params.id), actor(req))),
    );
    app.delete<{ Params: { id: string } }>('/admin/partners/:id', { preHandler: admin }, async (req, reply) => {
      await ctx.directory.remove(req.params.id, actor(req));
      return reply.code(204).send();
    });
  };
}

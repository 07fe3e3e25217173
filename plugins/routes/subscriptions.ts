import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { FHIR_JSON, searchset } from '../../src/fhir/views.ts';
import { publicUrls } from '../../src/runtime/public-urls.ts';
import { parseSubscription, subscriptionResource, type SubscriptionStatus } from '../../src/notify/subscription.ts';
import {
  createSubscription,
  deleteSubscription,
  listSubscriptions,
  readSubscription,
  updateSubscription,
} from '../../src/notify/subscription-store.ts';
import { subscriptionStatus } from '../../src/notify/subscription-status.ts';
import { requireScope } from '../guard.ts';
import { FHIR_REST } from '../route-policy.ts';
import { replyRead } from './fhir-read.ts';
import { postedSearchParams, type SearchQuery } from './fhir-search-body.ts';

/** SMART v2 spellings; v1 `system/Subscription.read`/`.write` and the `*` wildcards satisfy them too (src/auth/scopes.ts). */
export const SUBSCRIPTION_SCOPE = {
  create: 'system/Subscription.c',
  read: 'system/Subscription.r',
  update: 'system/Subscription.u',
  delete: 'system/Subscription.d',
  search: 'system/Subscription.s',
} as const;

const STATUSES = new Set<string>(['requested', 'active', 'error', 'off']);

/**
 * FHIR Subscriptions (R4 Backport IG) on the exchange-state topic: create,
 * read, update, delete and search a client's own subscriptions, and
 * `$status`. Another client's subscription is not found. Refusals are
 * audited as subscription.refused.
 */
export function subscriptionRoutes(ctx: GatewayContext): FastifyPluginAsync {
  return async (app) => {
    const fhirBase = publicUrls(ctx.config.baseUrl).fhir;
    const config = { ...FHIR_REST, refusalAudit: 'subscription.refused' as const };
    const clientOf = (req: FastifyRequest) => req.principal?.clientId ?? '';
    const own = async (req: FastifyRequest<{ Params: { id: string } }>) => {
      const s = await readSubscription(ctx.pool, req.params.id, clientOf(req));
      if (!s) throw new GatewayError('NOT_FOUND', `no Subscription ${req.params.id}`);
      return s;
    };
    const fhir = (reply: FastifyReply, body: object) =>
      reply.header('Cache-Control', 'no-store').type(FHIR_JSON).send(body);

    app.post(
      '/fhir/Subscription',
      { config, preHandler: requireScope(ctx, SUBSCRIPTION_SCOPE.create) },
      async (req, reply) => {
        const s = await createSubscription(ctx.pool, clientOf(req), parseSubscription(req.body, fhirBase));
        return fhir(
          reply.code(201).header('Location', `${fhirBase}/Subscription/${s.id}`),
          subscriptionResource(s, fhirBase),
        );
      },
    );

    app.get<{ Params: { id: string } }>(
      '/fhir/Subscription/:id',
      { config, preHandler: requireScope(ctx, SUBSCRIPTION_SCOPE.read) },
      async (req, reply) => {
        const s = await own(req);
        return replyRead(
          req,
          reply.header('Cache-Control', 'no-store'),
          subscriptionResource(s, fhirBase),
          s.updatedAt,
        );
      },
    );

    app.put<{ Params: { id: string } }>(
      '/fhir/Subscription/:id',
      { config, preHandler: requireScope(ctx, SUBSCRIPTION_SCOPE.update) },
      async (req, reply) => {
        const body = req.body as { id?: unknown } | undefined;
        if (body?.id !== req.params.id)
          throw new GatewayError('INVALID_VALUE', 'the Subscription id must be the id in the URL', {
            expression: 'Subscription.id',
          });
        const s = await updateSubscription(ctx.pool, req.params.id, clientOf(req), parseSubscription(body, fhirBase));
        return fhir(reply, subscriptionResource(s, fhirBase));
      },
    );

    app.delete<{ Params: { id: string } }>(
      '/fhir/Subscription/:id',
      { config, preHandler: requireScope(ctx, SUBSCRIPTION_SCOPE.delete) },
      async (req, reply) => {
        await deleteSubscription(ctx.pool, req.params.id, clientOf(req));
        return reply.code(204).send();
      },
    );

    // Backport $status: the subscription's SubscriptionStatus (type query-status) in a searchset.
    app.get<{ Params: { id: string } }>(
      '/fhir/Subscription/:id/$status',
      { config, preHandler: requireScope(ctx, SUBSCRIPTION_SCOPE.read) },
      async (req, reply) => {
        const s = await own(req);
        const status = subscriptionStatus({
          id: s.id,
          subscriptionId: s.id,
          status: s.status,
          type: 'query-status',
          eventsSinceStart: s.eventsSinceStart,
          payloadContent: s.payloadContent,
          fhirBase,
        });
        return fhir(
          reply,
          searchset({
            self: `${fhirBase}/Subscription/${s.id}/$status`,
            resources: [status],
            fullUrl: () => `urn:uuid:${s.id}`,
          }),
        );
      },
    );

    const search = async (params: SearchQuery, reply: FastifyReply, clientId: string) => {
      for (const name of Object.keys(params))
        if (name !== 'status' && name !== '_format')
          throw new GatewayError('INVALID_VALUE', `unknown search parameter ${name} (Subscription takes status)`, {
            expression: name,
          });
      // A posted search gives every value as a list; status is given once.
      const given = params.status;
      const status = Array.isArray(given) && given.length === 1 ? given[0] : given;
      if (status !== undefined && (typeof status !== 'string' || !STATUSES.has(status)))
        throw new GatewayError('INVALID_VALUE', 'status is one of requested, active, error, off', {
          expression: 'status',
        });
      const found = await listSubscriptions(ctx.pool, clientId, status as SubscriptionStatus | undefined);
      return fhir(
        reply,
        searchset({
          self: `${fhirBase}/Subscription${status ? `?status=${status}` : ''}`,
          resources: found.map((s) => subscriptionResource(s, fhirBase)),
          fullUrl: (r) => `${fhirBase}/Subscription/${r.id ?? ''}`,
        }),
      );
    };
    const searchRoute = { config, preHandler: requireScope(ctx, SUBSCRIPTION_SCOPE.search) };
    app.get('/fhir/Subscription', searchRoute, (req, reply) => search(req.query as SearchQuery, reply, clientOf(req)));
    app.post('/fhir/Subscription/_search', searchRoute, (req, reply) =>
      search(postedSearchParams(req), reply, clientOf(req)),
    );
  };
}

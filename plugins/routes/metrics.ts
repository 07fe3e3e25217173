import { createServer, type Server } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { operationOutcome } from '../../src/fhir/outcome.ts';
import { createGatewayMetrics, type GatewayMetrics } from '../../src/metrics/gateway-metrics.ts';
import type { RouteGroup } from '../../src/metrics/process-metrics.ts';
import type { RefusalAuditType } from '../route-policy.ts';
import { requireScope, SCOPE_ADMIN } from '../guard.ts';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: GatewayMetrics;
  }
}

export const METRICS_PATH = '/metrics';

/**
 * The request metrics count the routes operators watch, named by the refusal
 * audit they declare; processed receipts are peer requests at the inbox URL.
 */
const GROUP_OF: Record<RefusalAuditType, RouteGroup | null> = {
  'intake.refused': 'intake',
  'inbox.refused': 'inbox',
  'processed-receipt.refused': 'inbox',
  // The evidence route is a peer route under the inbox.
  'evidence.refused': 'inbox',
  // The Subscription API is configuration, not traffic: its audit is what an operator reads.
  'subscription.refused': null,
};

/** A listener of its own (METRICS_LISTEN=HOST:PORT): GET /metrics and nothing else, no token. */
function metricsListener(metrics: GatewayMetrics): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' || path !== METRICS_PATH) {
      const status = path === METRICS_PATH ? 405 : 404;
      res.writeHead(status, { 'content-type': 'application/fhir+json', ...(status === 405 ? { allow: 'GET' } : {}) });
      res.end(
        JSON.stringify(
          operationOutcome({
            code: 'not-found',
            errorCode: status === 405 ? 'METHOD_NOT_ALLOWED' : 'NOT_FOUND',
            diagnostics: `this listener serves GET ${METRICS_PATH} only`,
          }),
        ),
      );
      return;
    }
    metrics.render().then(
      (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
      () => res.writeHead(503, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
}

/**
 * The metrics registry, the request hook that feeds it, and its exposure as
 * METRICS_LISTEN says. Installed on the root instance, so the hook sees every route.
 */
export function installMetrics(app: FastifyInstance, ctx: GatewayContext): void {
  const metrics = createGatewayMetrics(ctx);
  app.decorate('metrics', metrics);
  app.addHook('onResponse', async (request, reply) => {
    const audit = request.routeOptions.config.refusalAudit;
    const group = audit ? GROUP_OF[audit] : null;
    if (!group) return;
    metrics.requests.observe(group, reply.statusCode, reply.elapsedTime / 1000, reply.gatewayError?.code);
  });
  const listen = ctx.config.metricsListen;
  if (listen.mode === 'main') {
    const admin = requireScope(ctx, SCOPE_ADMIN);
    app.get(METRICS_PATH, { preHandler: admin }, async (_request, reply) =>
      reply.type(metrics.contentType).send(await metrics.render()),
    );
  } else if (listen.mode === 'listen') {
    const server = metricsListener(metrics);
    app.addHook(
      'onReady',
      () =>
        new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(listen.port, listen.host, () => {
            server.off('error', reject);
            resolve();
          });
        }),
    );
    app.addHook(
      'onClose',
      () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    );
  }
}

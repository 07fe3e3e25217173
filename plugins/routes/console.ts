import { join } from 'node:path';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { auditRefusal } from '../../src/auth/audit.ts';
import { MFA_PAGE } from '../../src/mfa/sign-in.ts';
import { attemptHistory, listDeliveries, retryDelivery } from '../../src/outbound/delivery-admin.ts';
import { decideDowngrade, resumePartner, suspendPartner } from '../../src/outbound/partner-suspension.ts';
import { partnerHealth } from '../../src/console/partner-health.ts';
import { checkpointFreshness, keyInventory } from '../../src/console/key-inventory.ts';
import { consolePage, forbiddenPage, loginPage } from '../../src/console/page.ts';
import { consoleFilter } from '../../src/console/filter.ts';
import { signInOptions } from '../../src/auth/sso.ts';
import { cookieAccount, markGuard, pageAccount, publicAccess } from './audit-guard.ts';
import { refuseCrossSite } from './session-csrf.ts';
import { PAGE_SECURITY_HEADERS } from './page-headers.ts';
import { folderFiles, SCRIPT_TYPE, serveAssets, STYLE_TYPE } from './page-assets.ts';

declare module 'fastify' {
  interface FastifyRequest {
    operator?: string;
  }
}

const UI_DIR = join(import.meta.dirname, '..', '..', 'src', 'console', 'ui');
const HTML = 'text/html; charset=utf-8';
const STATIC: Record<string, string> = { 'console.js': SCRIPT_TYPE, 'console.css': STYLE_TYPE };
const OPERATOR = 'operator';

/**
 * The operator console: partner health, deliveries with their attempts,
 * retry and suspend/resume, the key inventory and checkpoint freshness.
 * Signed in through the audit page's session (one mechanism for both pages),
 * with an account of role operator.
 */
export function consoleRoutes(ctx: GatewayContext): FastifyPluginAsync {
  const denied = (req: FastifyRequest, user: string, reason: string) =>
    auditRefusal(
      ctx.pool,
      ctx.logger,
      'authz.denied',
      { user, remoteAddress: req.ip },
      { reason, route: req.routeOptions.url ?? null, method: req.method },
    );

  /** The write routes: a signed-in operator, else 401 (no session) or 403 (pending sign-in, another role), audited. */
  const operatorOnly: preHandlerAsyncHookHandler = markGuard(async (req: FastifyRequest) => {
    const account = await cookieAccount(ctx, req);
    if (!account) {
      await auditRefusal(ctx.pool, ctx.logger, 'auth.failure', { remoteAddress: req.ip }, { reason: 'no_session' });
      throw new GatewayError('UNAUTHENTICATED', 'sign in to the console first');
    }
    if (account.role !== OPERATOR) {
      await denied(req, account.name, 'not_operator');
      throw new GatewayError('FORBIDDEN', 'the console needs an account with the operator role');
    }
    req.operator = account.name;
  });
  const actor = (req: FastifyRequest) => ({
    type: 'user' as const,
    id: req.operator ?? 'unknown',
    network: req.ip,
  });
  const signIn = signInOptions(ctx.config);
  const page = (reply: FastifyReply, status: number, html: string) =>
    reply.code(status).headers(PAGE_SECURITY_HEADERS).type(HTML).send(html);

  return async (app) => {
    app.get('/console', { preHandler: publicAccess }, async (_req, reply) => reply.redirect('/console/', 302));
    // The page itself: the sign-in form without a session, a 403 page for another role.
    app.get('/console/', { preHandler: publicAccess }, async (req, reply) => {
      const account = await pageAccount(ctx, req);
      if (account === 'pending') return reply.redirect(MFA_PAGE, 302);
      if (!account) return page(reply, 200, loginPage(signIn));
      if (account.role !== OPERATOR) {
        await denied(req, account.name, 'not_operator');
        return page(reply, 403, forbiddenPage(account.name, signIn.signOut));
      }
      const filter = consoleFilter(req.query as Record<string, unknown>);
      const deliveries = await listDeliveries(ctx.pool, filter);
      const partners = await partnerHealth(ctx.pool);
      const attempts = await attemptHistory(
        ctx.pool,
        deliveries.map((d) => d.id),
      );
      const keys = await keyInventory(ctx.pool, ctx.config);
      const checkpoint = await checkpointFreshness(ctx.pool);
      return page(
        reply,
        200,
        consolePage({
          user: account.name,
          signOut: signIn.signOut,
          partners,
          filter,
          deliveries,
          attempts,
          keys,
          checkpoint,
        }),
      );
    });
    serveAssets(app, '/console', STATIC, folderFiles(UI_DIR));

    const writes = { onRequest: refuseCrossSite(ctx, 'session'), preHandler: operatorOnly };
    app.post<{ Params: { id: string } }>('/console/deliveries/:id/retry', writes, async (req, reply) => {
      const kind = await retryDelivery(ctx, req.params.id, actor(req));
      return reply
        .code(202)
        .header('Cache-Control', 'no-store')
        .send({ delivery: req.params.id, kind, state: 'pending' });
    });
    app.post<{ Params: { id: string } }>('/console/partners/:id/suspend', writes, async (req, reply) => {
      await suspendPartner(ctx.pool, req.params.id, actor(req));
      ctx.directory.forget();
      return reply.header('Cache-Control', 'no-store').send({ partner: req.params.id, status: 'suspended' });
    });
    app.post<{ Params: { id: string } }>('/console/partners/:id/resume', writes, async (req, reply) => {
      const requeued = await resumePartner(ctx.pool, req.params.id, actor(req));
      ctx.directory.forget();
      return reply.header('Cache-Control', 'no-store').send({ partner: req.params.id, status: 'active', requeued });
    });
    for (const decision of ['allow-v1', 'hold'] as const)
      app.post<{ Params: { id: string } }>(
        `/console/partners/:id/downgrade/${decision}`,
        writes,
        async (req, reply) => {
          const requeued = await decideDowngrade(ctx.pool, req.params.id, decision, actor(req));
          ctx.directory.forget();
          return reply.header('Cache-Control', 'no-store').send({ partner: req.params.id, decision, requeued });
        },
      );
  };
}

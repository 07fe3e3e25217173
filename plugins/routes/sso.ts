import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { appendAudit } from '../../src/audit/append.ts';
import type { AuditEventType } from '../../src/audit/events.ts';
import { inTransaction } from '../../src/db/pool.ts';
import { claimSsoAccount, createSession, endSession, SESSION_TTL_MS } from '../../src/audit/users.ts';
import {
  CALLBACK_PATH,
  discoverSso,
  endSessionUrl,
  finishLogin,
  openPending,
  SSO_PAGES,
  startLogin,
  type SsoClient,
  type SsoPage,
} from '../../src/auth/sso.ts';
import { cookie, publicAccess, SESSION_COOKIE } from './audit-guard.ts';
import { refuseCrossSite } from './session-csrf.ts';

const PENDING_COOKIE = 'gw_sso_pending';
const ACCOUNT_NAME = /^[A-Za-z0-9._@-]{1,64}$/;

/**
 * Single sign-on to /audit/ui and /console: GET /auth/sso/login?page=...
 * sends the browser to the issuer, GET /auth/sso/callback comes back with the
 * code and ends in the same kind of session the local sign-in creates.
 * Registered only when OIDC_ISSUER is set.
 */
export function ssoRoutes(ctx: GatewayContext): FastifyPluginAsync {
  const cfg = ctx.config;
  // Discovered on first use, so a gateway starts while its issuer is down; a failure is retried next time.
  let client: Promise<SsoClient> | undefined;
  const sso = async () => {
    client ??= discoverSso(cfg).catch((err: unknown) => {
      client = undefined;
      ctx.logger.warn({ err: (err as Error).message }, 'OpenID Connect discovery failed');
      throw new GatewayError('UNAVAILABLE', 'the single sign-on issuer cannot be reached; try again shortly');
    });
    return client;
  };
  const secure = cfg.baseUrl.startsWith('https:') || Boolean(cfg.tlsCertFile);
  const cookieAttrs = `Path=/; HttpOnly${secure ? '; Secure' : ''}`;
  const record = (req: FastifyRequest, type: AuditEventType, name: string, detail: Record<string, unknown>) =>
    inTransaction(ctx.pool, (c) =>
      appendAudit(c, [
        {
          type,
          outcome: type === 'sso.login' ? 'success' : 'minor-failure',
          agent: { type: 'user', id: name, network: req.ip },
          detail: { via: 'sso', ...detail },
        },
      ]),
    );
  const refuse = async (req: FastifyRequest, reply: FastifyReply, name: string, reason: string, page?: SsoPage) => {
    await record(req, 'sso.refused', name, { reason, page: page ?? null });
    reply.header('Set-Cookie', `${PENDING_COOKIE}=; ${cookieAttrs}; SameSite=Lax; Max-Age=0`);
  };

  return async (app) => {
    app.get('/auth/sso/login', { preHandler: publicAccess }, async (req, reply) => {
      const page = (req.query as { page?: string }).page ?? 'audit';
      if (!Object.hasOwn(SSO_PAGES, page)) throw new GatewayError('BAD_REQUEST', 'page must be audit or console');
      const { url, cookie: pending } = await startLogin(await sso(), page as SsoPage);
      // Lax, not Strict: the cookie must come back on the issuer's top-level redirect to the callback.
      return reply
        .header('Set-Cookie', `${PENDING_COOKIE}=${pending}; ${cookieAttrs}; SameSite=Lax; Max-Age=600`)
        .header('Cache-Control', 'no-store')
        .redirect(url.href, 302);
    });

    app.get(CALLBACK_PATH, { preHandler: publicAccess }, async (req, reply) => {
      const client = await sso();
      const pending = openPending(client, cookie(req, PENDING_COOKIE));
      if (!pending) {
        await refuse(req, reply, 'unknown', 'no_pending_sign_in');
        throw new GatewayError('BAD_REQUEST', 'no sign-in in progress (or it expired); start again');
      }
      const callbackUrl = new URL(req.url, cfg.baseUrl);
      let identity;
      try {
        identity = await finishLogin(client, callbackUrl, pending);
      } catch (err) {
        const reason = (err as { code?: string }).code ?? 'invalid_callback';
        ctx.logger.info({ reason, err: (err as Error).message }, 'single sign-on refused');
        await refuse(req, reply, 'unknown', reason, pending.page);
        throw new GatewayError('UNAUTHENTICATED', 'the single sign-on could not be verified');
      }
      const { role, path } = SSO_PAGES[pending.page];
      if (!ACCOUNT_NAME.test(identity.name)) {
        await refuse(req, reply, 'unknown', 'unusable_name', pending.page);
        throw new GatewayError('FORBIDDEN', 'the issuer gave a user name the gateway cannot use (A-Z a-z 0-9 . _ @ -)');
      }
      if (!identity.roles.includes(role)) {
        await refuse(req, reply, identity.name, `missing_role_${role}`, pending.page);
        throw new GatewayError('FORBIDDEN', `this page needs the ${role} role from the issuer`);
      }
      if (!(await claimSsoAccount(ctx.pool, identity.name))) {
        await refuse(req, reply, identity.name, 'local_or_disabled_account', pending.page);
        throw new GatewayError('FORBIDDEN', 'this name belongs to a local or disabled account');
      }
      const session = await createSession(ctx.pool, identity.name, new Date(), role);
      await record(req, 'sso.login', identity.name, { page: pending.page, role, subject: identity.subject });
      return reply
        .header('Set-Cookie', [
          `${PENDING_COOKIE}=; ${cookieAttrs}; SameSite=Lax; Max-Age=0`,
          `${SESSION_COOKIE}=${session.token}; ${cookieAttrs}; SameSite=Strict; Max-Age=${SESSION_TTL_MS / 1000}`,
        ])
        .header('Cache-Control', 'no-store')
        .redirect(path, 302);
    });

    // Ends the gateway session; the page then sends the browser to the issuer's logout, when it has one.
    app.post(
      '/auth/sso/logout',
      { onRequest: refuseCrossSite(ctx, 'session'), preHandler: publicAccess },
      async (req, reply) => {
        await endSession(ctx.pool, cookie(req, SESSION_COOKIE));
        const next = endSessionUrl(await sso());
        return reply
          .header('Set-Cookie', `${SESSION_COOKIE}=; ${cookieAttrs}; SameSite=Strict; Max-Age=0`)
          .header('Cache-Control', 'no-store')
          .send({ redirect: next?.href ?? null });
      },
    );
  };
}

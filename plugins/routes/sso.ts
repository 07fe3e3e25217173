import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { ERROR_CODES, GatewayError } from '../../src/errors.ts';
import { appendAudit } from '../../src/audit/append.ts';
import type { AuditEventType } from '../../src/audit/events.ts';
import { inTransaction } from '../../src/db/pool.ts';
import { claimSsoAccount, createSession, endSession, sessionAccount, SESSION_TTL_MS } from '../../src/audit/users.ts';
import {
  CALLBACK_PATH,
  endSessionUrl,
  finishLogin,
  LOGOUT_PATH,
  openPending,
  refusalReason,
  SIGNED_OUT_PATH,
  SSO_PAGES,
  ssoPage,
  startLogin,
  type SsoClient,
  type SsoPage,
} from '../../src/auth/sso.ts';
import { signedInPage, ssoRefusedPage } from '../../src/console/page.ts';
import { cookie, publicAccess, SESSION_COOKIE } from './audit-guard.ts';
import { refuseCrossSite } from './session-csrf.ts';
import { PAGE_SECURITY_HEADERS } from './page-headers.ts';

const PENDING_COOKIE = 'gw_sso_pending';
const ACCOUNT_NAME = /^[A-Za-z0-9._@-]{1,64}$/;
const HTML = 'text/html; charset=utf-8';
const HEADINGS: Record<SsoPage, string> = { audit: 'Audit trail', console: 'Gateway operator console' };

/** One refused callback: what the audit entry says, and what the person is told. */
interface Refusal {
  name: string;
  reason: string;
  page: SsoPage | undefined;
  error: GatewayError;
  detail?: Record<string, unknown>;
}

/**
 * Single sign-on to /audit/ui and /console: GET /auth/sso/login?page=...
 * sends the browser to the issuer, GET /auth/sso/callback comes back with the
 * code and ends in the same kind of session the local sign-in creates,
 * bound to the issuer's session. Registered only when OIDC_ISSUER is set.
 */
export function ssoRoutes(ctx: GatewayContext, sso: () => Promise<SsoClient>): FastifyPluginAsync {
  const cfg = ctx.config;
  const secure = cfg.baseUrl.startsWith('https:') || Boolean(cfg.tlsCertFile);
  const cookieAttrs = `Path=/; HttpOnly${secure ? '; Secure' : ''}`;
  const clearPending = `${PENDING_COOKIE}=; ${cookieAttrs}; SameSite=Lax; Max-Age=0`;
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
  /**
   * Audit the refusal, forget the pending sign-in and answer 4xx: a page
   * saying why to a browser, an OperationOutcome to anything else. No session.
   */
  const refuse = async (req: FastifyRequest, reply: FastifyReply, r: Refusal) => {
    await record(req, 'sso.refused', r.name, { reason: r.reason, page: r.page ?? null, ...r.detail });
    reply.header('Set-Cookie', clearPending);
    if (!(req.headers.accept ?? '').includes('text/html')) throw r.error;
    const page = r.page ?? 'audit';
    return reply
      .code(ERROR_CODES[r.error.code].status)
      .headers(PAGE_SECURITY_HEADERS)
      .type(HTML)
      .send(ssoRefusedPage(HEADINGS[page], r.error.message, SSO_PAGES[page].path));
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
        return refuse(req, reply, {
          name: 'unknown',
          reason: 'no_pending_sign_in',
          page: undefined,
          error: new GatewayError('BAD_REQUEST', 'no sign-in in progress (or it expired); start again'),
        });
      }
      const { page } = pending;
      const unverified = new GatewayError('UNAUTHENTICATED', 'the single sign-on could not be verified; start again');
      const callbackUrl = new URL(req.url, cfg.baseUrl);
      if (callbackUrl.searchParams.get('state') !== pending.state)
        return refuse(req, reply, { name: 'unknown', reason: 'state_mismatch', page, error: unverified });
      let identity;
      try {
        identity = await finishLogin(client, callbackUrl, pending);
      } catch (err) {
        const reason = refusalReason(err);
        const code = String((err as { code?: unknown }).code ?? 'none').slice(0, 64);
        ctx.logger.info({ reason, err: (err as Error).message }, 'single sign-on refused');
        return refuse(req, reply, { name: 'unknown', reason, page, error: unverified, detail: { check: code } });
      }
      const { role, path } = SSO_PAGES[page];
      if (!ACCOUNT_NAME.test(identity.name)) {
        return refuse(req, reply, {
          name: 'unknown',
          reason: 'unusable_name',
          page,
          error: new GatewayError(
            'FORBIDDEN',
            'the issuer gave a user name the gateway cannot use (A-Z a-z 0-9 . _ @ -)',
          ),
        });
      }
      if (!identity.roles.includes(role)) {
        return refuse(req, reply, {
          name: identity.name,
          reason: `missing_role_${role}`,
          page,
          error: new GatewayError('FORBIDDEN', `this page needs the ${role} role from the issuer`),
        });
      }
      if (!(await claimSsoAccount(ctx.pool, identity.name))) {
        return refuse(req, reply, {
          name: identity.name,
          reason: 'local_or_disabled_account',
          page,
          error: new GatewayError('FORBIDDEN', 'this name belongs to a local or disabled account'),
        });
      }
      const session = await createSession(ctx.pool, identity.name, new Date(), role, 'full', identity.issuerSession);
      await record(req, 'sso.login', identity.name, { page, role, subject: identity.subject });
      // A page that goes on to the page, not a redirect: see signedInPage for why.
      return reply
        .header('Set-Cookie', [
          clearPending,
          `${SESSION_COOKIE}=${session.token}; ${cookieAttrs}; SameSite=Strict; Max-Age=${SESSION_TTL_MS / 1000}`,
        ])
        .headers(PAGE_SECURITY_HEADERS)
        .type(HTML)
        .send(signedInPage(HEADINGS[page], path));
    });

    // Ends the gateway session. An issuer session (or one that lapsed: it may have been one) is ended at the
    // issuer too: the page sends the browser to the URL answered, and the issuer sends it back to the page.
    app.post(
      LOGOUT_PATH,
      { onRequest: refuseCrossSite(ctx, 'session'), preHandler: publicAccess },
      async (req, reply) => {
        const token = cookie(req, SESSION_COOKIE);
        const account = await sessionAccount(ctx.pool, token);
        await endSession(ctx.pool, token);
        const page = ssoPage((req.body as { page?: unknown } | undefined)?.page);
        // A local (break-glass) session just ends; nor does an unreachable issuer keep the session alive.
        const next = account?.sso === false ? undefined : await sso().then((c) => endSessionUrl(c, page), noUrl);
        return reply
          .header('Set-Cookie', `${SESSION_COOKIE}=; ${cookieAttrs}; SameSite=Strict; Max-Age=0`)
          .header('Cache-Control', 'no-store')
          .send({ redirect: next?.href ?? null });
      },
    );

    // The post-logout redirect URI: back to the page named by the state the gateway gave the issuer.
    app.get(SIGNED_OUT_PATH, { preHandler: publicAccess }, async (req, reply) =>
      reply.redirect(SSO_PAGES[ssoPage((req.query as { state?: unknown }).state)].path, 302),
    );
  };
}

const noUrl = (): undefined => undefined;

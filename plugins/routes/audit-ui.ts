import { readFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { join } from 'node:path';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { chargeRate } from '../../src/auth/rate-limit.ts';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { appendAudit, type AuditInput } from '../../src/audit/append.ts';
import type { AuditEventType } from '../../src/audit/events.ts';
import {
  checkLogin,
  endSession,
  localAccountRole,
  PENDING_SESSION_TTL_MS,
  SESSION_TTL_MS,
} from '../../src/audit/users.ts';
import { claimLoginAttempt, LOGIN_POLICY } from '../../src/audit/login-backoff.ts';
import { inTransaction } from '../../src/db/pool.ts';
import { MFA_PAGE, passwordAccepted } from '../../src/mfa/sign-in.ts';
import { cookie, cookieAccount, pageAccount, publicAccess, SESSION_COOKIE, sessionCookie } from './audit-guard.ts';
import { refuseCrossSite } from './session-csrf.ts';
import { isPlainIdentifier } from '../../src/ids.ts';
import { PAGE_SECURITY_HEADERS as SECURITY_HEADERS } from './page-headers.ts';
import { cachedFiles, folderFiles, SCRIPT_TYPE, serveAssets, STYLE_TYPE } from './page-assets.ts';
import { signInOptions } from '../../src/auth/sso.ts';

type AuditDetail = NonNullable<AuditInput['detail']>;

const AUDIT_DIR = join(import.meta.dirname, '..', '..', 'src', 'audit');
const VERIFIER_DIR = join(AUDIT_DIR, 'verifier');
const UI_DIR = join(AUDIT_DIR, 'ui');
/** The pure verifier modules the page imports: the same files the CLI runs, types stripped. */
const LIB = new Set(['merkle.ts', 'note.ts', 'verify.ts', 'sha256.ts', 'disclosures.ts']);
const INDEX_TYPE = 'text/html; charset=utf-8';
const STATIC: Record<string, string> = { 'app.js': SCRIPT_TYPE, 'style.css': STYLE_TYPE };

// Per address, generous: officers behind one reverse proxy must not block each other. Guessing is
// stopped per account (src/audit/login-backoff.ts), which every process shares.
const LOGINS_PER_ADDRESS_PER_MINUTE = 60;
const BAD_LOGIN = 'unknown user or wrong password';

/**
 * The compliance officer's page: sign in with a named compliance account
 * (gateway audit users add), search events, open one, check its proof and
 * verify the whole trail in the browser. Self-contained: no CDN.
 */
export function auditUiRoutes(ctx: GatewayContext): FastifyPluginAsync {
  const load = folderFiles(UI_DIR);
  const loadLib = cachedFiles((name) => stripTypeScriptTypes(readFileSync(join(VERIFIER_DIR, name), 'utf8')));
  const setCookie = (reply: FastifyReply, value: string, maxAge: number) =>
    reply.header('Set-Cookie', sessionCookie(ctx, value, maxAge));
  const record = (req: FastifyRequest, type: AuditEventType, name: string, ok: boolean, detail: AuditDetail = {}) =>
    inTransaction(ctx.pool, (c) =>
      appendAudit(c, [
        {
          type,
          outcome: ok ? 'success' : 'minor-failure',
          agent: { type: 'user', id: name, network: req.ip },
          detail: { via: 'audit-ui', ...detail },
        },
      ]),
    );

  return async (app) => {
    app.get('/audit/ui', { preHandler: publicAccess }, async (_req, reply) => reply.redirect('/audit/ui/', 302));
    app.get('/audit/ui/', { preHandler: publicAccess }, async (req, reply) => {
      // A pending sign-in (second factor or enrolment due) belongs on the sign-in security page.
      if ((await pageAccount(ctx, req)) === 'pending') return reply.redirect(MFA_PAGE, 302);
      return reply.headers(SECURITY_HEADERS).type(INDEX_TYPE).send(load('index.html'));
    });
    serveAssets(app, '/audit/ui', STATIC, load);
    serveAssets(app, '/audit/ui/lib', Object.fromEntries([...LIB].map((name) => [name, SCRIPT_TYPE])), loadLib);

    app.post(
      '/audit/ui/login',
      { onRequest: refuseCrossSite(ctx, 'sign-in'), preHandler: publicAccess },
      async (req, reply) => {
        // Break-glass only: with single sign-on the local accounts are off unless LOCAL_LOGIN=on.
        if (!ctx.config.localLogin) {
          await record(req, 'auth.failure', 'unknown', false, { reason: 'local_login_off' });
          throw new GatewayError('FORBIDDEN', 'local sign-in is off; use single sign-on');
        }
        const body = req.body as { name?: unknown; password?: unknown } | undefined;
        const name = typeof body?.name === 'string' ? body.name.slice(0, 64) : '';
        const password = typeof body?.password === 'string' ? body.password.slice(0, 200) : '';
        if (!name || !password) throw new GatewayError('BAD_REQUEST', 'send {"name": ..., "password": ...} as JSON');
        chargeRate(ctx, `audit-ui-login:${req.ip}`, LOGINS_PER_ADDRESS_PER_MINUTE);
        if (!isPlainIdentifier(name)) {
          // A failed sign-in like any other; the name itself names no account and is not written.
          await record(req, 'auth.failure', 'unknown', false, { reason: 'malformed_name' });
          throw new GatewayError('BAD_REQUEST', 'an account name has no control characters', { expression: 'name' });
        }
        const gate = await claimLoginAttempt(ctx.pool, name);
        if (gate.kind === 'wait') {
          await record(req, 'auth.failure', name, false, { reason: 'backoff', retry_after: gate.retryAfter });
          throw new GatewayError('RATE_LIMITED', `too many failed sign-ins; retry in ${gate.retryAfter} s`, {
            retryAfter: gate.retryAfter,
          });
        }
        // Locked: the same answer as a wrong password, whatever was typed; only the audit entry says why.
        if (gate.kind === 'locked') {
          await record(req, 'auth.failure', name, false, { reason: 'account_locked', failures: gate.failures });
          throw new GatewayError('UNAUTHENTICATED', BAD_LOGIN);
        }
        if (!(await checkLogin(ctx.pool, name, password))) {
          const locked = gate.failures >= LOGIN_POLICY.lockAfter;
          await record(req, 'auth.failure', name, false, {
            reason: 'bad_credentials',
            failures: gate.failures,
            locked,
          });
          throw new GatewayError('UNAUTHENTICATED', BAD_LOGIN);
        }
        const role = await localAccountRole(ctx.pool, name);
        if (!role) throw new GatewayError('UNAUTHENTICATED', BAD_LOGIN); // disabled between the two reads
        // A second factor or an enrolment may still be due: then the session is pending (src/mfa/policy.ts).
        const signedIn = await passwordAccepted(ctx, name, role, req.ip);
        setCookie(reply, signedIn.token, (signedIn.stage === 'full' ? SESSION_TTL_MS : PENDING_SESSION_TTL_MS) / 1000);
        return reply.header('Cache-Control', 'no-store').send({
          user: name,
          expiresAt: signedIn.expiresAt.toISOString(),
          ...(signedIn.stage === 'full' ? {} : { stage: signedIn.stage, next: signedIn.next }),
        });
      },
    );

    app.post(
      '/audit/ui/logout',
      { onRequest: refuseCrossSite(ctx, 'session'), preHandler: publicAccess },
      async (req, reply) => {
        await endSession(ctx.pool, cookie(req, SESSION_COOKIE));
        setCookie(reply, '', 0);
        return reply.code(204).send();
      },
    );

    // What the page's sign-in form offers (single sign-on, local accounts) and where its sign-out posts.
    const signIn = signInOptions(ctx.config);
    app.get('/audit/ui/sign-in', { preHandler: publicAccess }, async (_req, reply) =>
      reply.header('Cache-Control', 'no-store').send(signIn),
    );

    // The page probes its own session on load: a plain 401 here, not an audited bearer-token failure.
    app.get('/audit/ui/session', { preHandler: publicAccess }, async (req, reply) => {
      const account = await cookieAccount(ctx, req);
      if (account?.role !== 'compliance') throw new GatewayError('UNAUTHENTICATED', 'not signed in');
      return reply.header('Cache-Control', 'no-store').send({ user: account.name });
    });
  };
}

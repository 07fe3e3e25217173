import { join } from 'node:path';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { auditRefusal } from '../../src/auth/audit.ts';
import { chargeRate } from '../../src/auth/rate-limit.ts';
import { sessionState, sessionTokenHash, SESSION_TTL_MS, type SessionStage } from '../../src/audit/users.ts';
import { factorSummary, listPasskeys } from '../../src/mfa/factor-store.ts';
import {
  confirmTotp,
  passkeyRegistrationOptions,
  pendingTotp,
  registerPasskey,
  renewRecoveryCodes,
  startTotpEnrolment,
  type Enrolled,
} from '../../src/mfa/enrolment.ts';
import { mfaPage, type MfaView } from '../../src/mfa/page.ts';
import { authenticationOptions, relyingParty } from '../../src/mfa/passkeys.ts';
import { homeOf } from '../../src/mfa/policy.ts';
import {
  passkeySignIn,
  secondFactorPasskey,
  secondFactorRecoveryCode,
  secondFactorTotp,
  type CurrentSession,
  type SignedIn,
} from '../../src/mfa/sign-in.ts';
import { cookie, publicAccess, SESSION_COOKIE, sessionCookie } from './audit-guard.ts';
import { refuseCrossSite } from './session-csrf.ts';
import { PAGE_SECURITY_HEADERS } from './page-headers.ts';
import { folderFiles, SCRIPT_TYPE, serveAssets, STYLE_TYPE } from './page-assets.ts';

const UI_DIR = join(import.meta.dirname, '..', '..', 'src', 'mfa', 'ui');
const STATIC: Record<string, string> = { 'mfa.js': SCRIPT_TYPE, 'mfa.css': STYLE_TYPE };
// Per address, like the password sign-in; guessing is stopped per account (the shared backoff and lockout).
const ATTEMPTS_PER_ADDRESS_PER_MINUTE = 60;

/**
 * The sign-in security page and its steps (/auth/mfa/...): a passkey
 * sign-in, the second factor of a pending session (passkey, TOTP code,
 * recovery code), and enrolment (passkey, TOTP with its QR code, new
 * recovery codes). The only routes a pending session reaches; every other
 * cookie-authenticated route refuses it (cookieAccount in audit-guard.ts).
 */
export function mfaRoutes(ctx: GatewayContext): FastifyPluginAsync {
  const rp = relyingParty(ctx.config.baseUrl);

  const current = async (req: FastifyRequest): Promise<CurrentSession | undefined> => {
    const token = cookie(req, SESSION_COOKIE);
    const state = await sessionState(ctx.pool, token);
    return state && token ? { ...state, token } : undefined;
  };
  /** The request's session at one of `stages`, else 401 (none, audited) or 409 (another stage). */
  const session = async (req: FastifyRequest, stages: SessionStage[]): Promise<CurrentSession> => {
    const s = await current(req);
    if (!s) {
      await auditRefusal(ctx.pool, ctx.logger, 'auth.failure', { remoteAddress: req.ip }, { reason: 'no_session' });
      throw new GatewayError('UNAUTHENTICATED', 'sign in with your name and password first');
    }
    if (!stages.includes(s.stage))
      throw new GatewayError(
        'CONFLICT',
        s.stage === 'full' ? 'already signed in' : 'this step does not belong to your sign-in',
      );
    return s;
  };
  const code = (req: FastifyRequest): string => {
    const value = (req.body as { code?: unknown } | undefined)?.code;
    if (typeof value !== 'string' || value.length === 0 || value.length > 64)
      throw new GatewayError('BAD_REQUEST', 'send {"code": "..."} as JSON', { expression: 'code' });
    return value.trim();
  };
  const credential = (req: FastifyRequest): unknown => {
    if (typeof req.body !== 'object' || req.body === null || Array.isArray(req.body))
      throw new GatewayError('BAD_REQUEST', 'send the WebAuthn credential as a JSON object');
    return req.body;
  };
  const limited = (req: FastifyRequest) => chargeRate(ctx, `mfa:${req.ip}`, ATTEMPTS_PER_ADDRESS_PER_MINUTE);
  const localOnly = async (req: FastifyRequest) => {
    if (ctx.config.localLogin) return;
    await auditRefusal(ctx.pool, ctx.logger, 'auth.failure', { remoteAddress: req.ip }, { reason: 'local_login_off' });
    throw new GatewayError('FORBIDDEN', 'local sign-in is off; use single sign-on');
  };
  /** A completed sign-in: the full session's cookie replaces the pending one. */
  const signedIn = (reply: FastifyReply, s: SignedIn, extra: object = {}) =>
    reply
      .header('Set-Cookie', sessionCookie(ctx, s.token, SESSION_TTL_MS / 1000))
      .header('Cache-Control', 'no-store')
      .send({ next: s.next, ...extra });
  const enrolledReply = (reply: FastifyReply, e: Enrolled) =>
    e.signedIn
      ? signedIn(reply, e.signedIn, e.recoveryCodes ? { recoveryCodes: e.recoveryCodes } : {})
      : reply
          .header('Cache-Control', 'no-store')
          .send({ next: '/auth/mfa/', ...(e.recoveryCodes ? { recoveryCodes: e.recoveryCodes } : {}) });
  const view = async (s: CurrentSession | undefined): Promise<MfaView> => {
    if (!s) return { kind: 'passkey-sign-in' };
    if (s.sso) return { kind: 'single-sign-on', user: s.name, home: homeOf(s.role) };
    if (s.stage === 'second-factor')
      return { kind: 'second-factor', user: s.name, factors: await factorSummary(ctx.pool, s.name) };
    const pending = await pendingTotp(ctx, s);
    const pendingView = pending && { key: pending.key, qrSvg: pending.qrSvg };
    if (s.stage === 'enrol')
      return { kind: 'enrol', user: s.name, ...(pendingView ? { pendingTotp: pendingView } : {}) };
    return {
      kind: 'factors',
      user: s.name,
      home: homeOf(s.role),
      factors: await factorSummary(ctx.pool, s.name),
      passkeys: await listPasskeys(ctx.pool, s.name),
      ...(pendingView ? { pendingTotp: pendingView } : {}),
    };
  };

  return async (app) => {
    app.get('/auth/mfa', { preHandler: publicAccess }, async (_req, reply) => reply.redirect('/auth/mfa/', 302));
    app.get('/auth/mfa/', { preHandler: publicAccess }, async (req, reply) =>
      reply
        .headers(PAGE_SECURITY_HEADERS)
        .type('text/html; charset=utf-8')
        .send(mfaPage(await view(await current(req)))),
    );
    serveAssets(app, '/auth/mfa', STATIC, folderFiles(UI_DIR));

    const sessionWrites = { onRequest: refuseCrossSite(ctx, 'session'), preHandler: publicAccess };
    // A passkey sign-in starts without a session (the sign-in rules apply); with one, the session rules too.
    const signInWrites = {
      onRequest: [refuseCrossSite(ctx, 'session'), refuseCrossSite(ctx, 'sign-in')],
      preHandler: publicAccess,
    };

    // Enrolment: a pending `enrol` session, or a full session of a local account.
    app.post('/auth/mfa/passkey/registration-options', sessionWrites, async (req, reply) => {
      limited(req);
      const s = await session(req, ['enrol', 'full']);
      const options = await passkeyRegistrationOptions(ctx, s, sessionTokenHash(s.token));
      return reply.header('Cache-Control', 'no-store').send(options);
    });
    app.post('/auth/mfa/passkey/registration', sessionWrites, async (req, reply) => {
      limited(req);
      const s = await session(req, ['enrol', 'full']);
      return enrolledReply(reply, await registerPasskey(ctx, s, sessionTokenHash(s.token), credential(req), req.ip));
    });
    app.post('/auth/mfa/totp/enrolment', sessionWrites, async (req, reply) => {
      const s = await session(req, ['enrol', 'full']);
      await startTotpEnrolment(ctx, s);
      return reply.code(201).header('Cache-Control', 'no-store').send({ next: '/auth/mfa/' });
    });
    app.post('/auth/mfa/totp/confirmation', sessionWrites, async (req, reply) => {
      limited(req);
      const s = await session(req, ['enrol', 'full']);
      return enrolledReply(reply, await confirmTotp(ctx, s, code(req), req.ip));
    });
    app.post('/auth/mfa/recovery-codes', sessionWrites, async (req, reply) => {
      const s = await session(req, ['full']);
      const recoveryCodes = await renewRecoveryCodes(ctx, s, req.ip);
      return reply.header('Cache-Control', 'no-store').send({ next: '/auth/mfa/', recoveryCodes });
    });

    // The second factor of a pending `second-factor` session, or a passkey alone without a session.
    app.post('/auth/mfa/passkey/authentication-options', signInWrites, async (req, reply) => {
      limited(req);
      const s = await current(req);
      if (!s) await localOnly(req);
      else if (s.stage !== 'second-factor') throw new GatewayError('CONFLICT', 'sign out before signing in again');
      const options = await authenticationOptions(ctx.pool, rp, s?.name, s ? sessionTokenHash(s.token) : undefined);
      return reply.header('Cache-Control', 'no-store').send(options);
    });
    app.post('/auth/mfa/passkey/authentication', signInWrites, async (req, reply) => {
      limited(req);
      const s = await current(req);
      if (!s) {
        await localOnly(req);
        return signedIn(reply, await passkeySignIn(ctx, credential(req), req.ip));
      }
      if (s.stage !== 'second-factor') throw new GatewayError('CONFLICT', 'sign out before signing in again');
      return signedIn(reply, await secondFactorPasskey(ctx, s, sessionTokenHash(s.token), credential(req), req.ip));
    });
    app.post('/auth/mfa/totp', sessionWrites, async (req, reply) => {
      limited(req);
      const s = await session(req, ['second-factor']);
      return signedIn(reply, await secondFactorTotp(ctx, s, code(req), req.ip));
    });
    app.post('/auth/mfa/recovery-code', sessionWrites, async (req, reply) => {
      limited(req);
      const s = await session(req, ['second-factor']);
      const result = await secondFactorRecoveryCode(ctx, s, code(req), req.ip);
      return signedIn(reply, result, { recoveryCodesLeft: result.remaining });
    });
  };
}

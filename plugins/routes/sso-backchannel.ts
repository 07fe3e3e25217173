import type { FastifyError, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { auditRefusal } from '../../src/auth/audit.ts';
import { backchannelLogout, LogoutRefusal, MAX_LOGOUT_TOKEN_LENGTH } from '../../src/auth/backchannel-logout.ts';
import { BACKCHANNEL_LOGOUT_PATH, type SsoClient } from '../../src/auth/sso.ts';
import { toErrorReply } from '../error-reply.ts';
import { publicAccess } from './audit-guard.ts';

/** A form with one logout token, and room to spare; anything larger is no logout request. */
const BODY_LIMIT = MAX_LOGOUT_TOKEN_LENGTH + 1024;

const FORM = 'application/x-www-form-urlencoded';

/**
 * POST /auth/sso/backchannel-logout, the issuer's back-channel logout: no
 * session, no bearer token (the signed logout token is the authentication).
 * Answers as OpenID Connect Back-Channel Logout 1.0 says, never as FHIR: 200
 * with no body once the sessions ended, 400 `invalid_request` for anything
 * wrong with the request (audited as sso.backchannel-refused), 503 with
 * Retry-After when the database or the issuer's keys are out of reach; all
 * `Cache-Control: no-store`.
 */
export function backchannelLogoutRoutes(ctx: GatewayContext, sso: () => Promise<SsoClient>): FastifyPluginAsync {
  async function logoutError(this: unknown, err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) {
    reply.header('Cache-Control', 'no-store');
    const translated = err instanceof LogoutRefusal ? undefined : toErrorReply(err, request.id);
    // A body, content type or value the route cannot take is an invalid request as much as a bad token.
    const refusal =
      err instanceof LogoutRefusal
        ? err
        : translated && translated.status < 500
          ? new LogoutRefusal(
              translated.code.toLowerCase(),
              `send logout_token as ${FORM}, at most ${BODY_LIMIT} bytes`,
            )
          : undefined;
    if (refusal) {
      await auditRefusal(
        ctx.pool,
        ctx.logger,
        'sso.backchannel-refused',
        { remoteAddress: request.ip },
        { reason: refusal.reason, endpoint: BACKCHANNEL_LOGOUT_PATH },
      );
      request.log.info({ reason: refusal.reason }, 'back-channel logout refused');
      return reply.code(400).send({ error: 'invalid_request', error_description: refusal.message });
    }
    if (translated?.status === 503) {
      request.log.error({ err }, 'back-channel logout failed: a dependency is unavailable');
      return reply
        .code(503)
        .header('Retry-After', String(translated.retryAfter ?? 5))
        .send({ error: 'temporarily_unavailable', error_description: translated.outcome.issue[0]?.diagnostics });
    }
    request.log.error({ err }, 'back-channel logout failed');
    return reply.code(500).send({ error: 'server_error', error_description: `internal error (request ${request.id})` });
  }

  return async (app) => {
    app.post(
      BACKCHANNEL_LOGOUT_PATH,
      { preHandler: publicAccess, bodyLimit: BODY_LIMIT, errorHandler: logoutError },
      async (request, reply) => {
        const form = request.body as Record<string, unknown> | undefined;
        const type = request.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
        if (type !== FORM || !form || typeof form !== 'object')
          throw new LogoutRefusal('not_form_encoded', `send logout_token as ${FORM}`);
        const token = form['logout_token'];
        if (typeof token !== 'string' || token === '')
          throw new LogoutRefusal('logout_token_missing', 'logout_token is required, once');
        await backchannelLogout(ctx.pool, await sso(), token, request.ip);
        return reply.header('Cache-Control', 'no-store').code(200).send();
      },
    );
  };
}

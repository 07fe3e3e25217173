import type { FastifyError, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { auditRefusal } from '../../src/auth/audit.ts';
import { OAuthError, clientAuthChallenge } from '../../src/auth/oauth-error.ts';
import { FHIR_BASE_PATH, SMART_CONFIGURATION_PATH, smartConfiguration } from '../../src/auth/smart-configuration.ts';
import { TOKEN_PATH, handleTokenRequest, tokenUrl } from '../../src/auth/token-endpoint.ts';
import { PUBLIC } from '../route-policy.ts';
import { toErrorReply } from '../error-reply.ts';

/**
 * SMART Backend Services discovery and the token endpoint. Token errors are
 * RFC 6749 JSON ({error, error_description}), what OAuth clients parse, not
 * OperationOutcome; none is ever a 5xx except a genuine server fault.
 */
export function authRoutes(ctx: GatewayContext): FastifyPluginAsync {
  return async (app) => {
    const discovery = smartConfiguration(tokenUrl(ctx));
    // The FHIR base is where SMART clients look; the root copy stays for clients configured with the server origin.
    for (const path of [FHIR_BASE_PATH + SMART_CONFIGURATION_PATH, SMART_CONFIGURATION_PATH])
      app.get(path, PUBLIC, async (_req, reply) =>
        reply.header('Cache-Control', 'public, max-age=3600').send(discovery),
      );

    const noStore = (reply: FastifyReply) => reply.header('Cache-Control', 'no-store').header('Pragma', 'no-cache');

    /** A body the endpoint cannot read (wrong content type, oversized, unparsable): refused and audited like any other. */
    const unreadableBody = () =>
      new OAuthError('invalid_request', 'not_form_encoded', 'send application/x-www-form-urlencoded parameters');

    async function tokenError(this: unknown, err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) {
      noStore(reply);
      if (err instanceof GatewayError && err.code === 'RATE_LIMITED') {
        return reply
          .code(429)
          .header('Retry-After', String(err.retryAfter ?? 1))
          .send({ error: 'slow_down', error_description: err.message });
      }
      // A body parser's refusal is a FastifyError, or a GatewayError (malformed JSON sent as application/json).
      const status = err instanceof GatewayError ? err.status : (err as FastifyError).statusCode;
      const refusal =
        err instanceof OAuthError
          ? err
          : typeof status === 'number' && status >= 400 && status < 500
            ? unreadableBody()
            : undefined;
      if (refusal) {
        await auditRefusal(
          ctx.pool,
          ctx.logger,
          'auth.failure',
          { clientId: refusal.clientId, remoteAddress: request.ip },
          { reason: refusal.reason, error: refusal.error, endpoint: TOKEN_PATH },
        );
        request.log.info(
          { error: refusal.error, reason: refusal.reason, clientId: refusal.clientId },
          'token request refused',
        );
        if (refusal.status === 401)
          reply.header('WWW-Authenticate', clientAuthChallenge(request.headers.authorization));
        return reply.code(refusal.status).send(refusal.body());
      }
      const translated = toErrorReply(err, request.id);
      if (translated.status === 503) {
        // The database or the HSM is away for a moment: the client may retry, it has done nothing wrong.
        request.log.error({ err }, 'token request failed: a dependency is unavailable');
        return reply
          .code(503)
          .header('Retry-After', String(translated.retryAfter ?? 5))
          .send({ error: 'temporarily_unavailable', error_description: translated.outcome.issue[0]?.diagnostics });
      }
      request.log.error({ err }, 'token request failed');
      return reply
        .code(500)
        .send({ error: 'server_error', error_description: `internal error (request ${request.id})` });
    }

    app.post(TOKEN_PATH, { ...PUBLIC, bodyLimit: 32 * 1024, errorHandler: tokenError }, async (request, reply) => {
      const form = request.body;
      if (
        !form ||
        typeof form !== 'object' ||
        request.headers['content-type']?.split(';')[0]?.trim().toLowerCase() !== 'application/x-www-form-urlencoded'
      ) {
        throw unreadableBody();
      }
      // RFC 6749 section 2.3: one authentication method per request, and the only one here is the assertion.
      if (request.headers.authorization !== undefined)
        throw new OAuthError(
          'invalid_client',
          'authorization_header_refused',
          'authenticate with a private_key_jwt client_assertion only; the Authorization header is not accepted here',
        );
      const body = await handleTokenRequest(ctx, form as Record<string, unknown>, request.ip);
      return noStore(reply).send(body);
    });
  };
}

import type { FastifyPluginAsync } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { acceptProcessedReceipt } from '../../src/outbound/answers/processed-receipts.ts';
import { PROTOCOL } from '../../src/protocol/wire.ts';
import '../route-policy.ts';

/** A processed receipt is one small compact JWS. */
export const PROCESSED_BODY_LIMIT = 16 * 1024;

const PROCESSED_PATH = PROTOCOL.inboxPath + PROTOCOL.processedSuffix;

/**
 * POST /inbox/processed (a peer route: mutual TLS and the sender binding,
 * like the deliveries): a partner's processed receipt for one of our
 * deliveries, answered 204 once stored (or already stored).
 */
export function processedRoutes(ctx: GatewayContext): FastifyPluginAsync {
  return async (app) => {
    app.addContentTypeParser(
      PROTOCOL.mediaType,
      { parseAs: 'string', bodyLimit: PROCESSED_BODY_LIMIT },
      (_req, body, done) => done(null, body),
    );
    app.post(
      PROCESSED_PATH,
      {
        config: { peer: true, refusalAudit: 'processed-receipt.refused', bodyBudget: true },
        bodyLimit: PROCESSED_BODY_LIMIT,
      },
      async (request, reply) => {
        if (
          typeof request.body !== 'string' ||
          !/^application\/jose\s*(;|$)/i.test(request.headers['content-type'] ?? '')
        )
          throw new GatewayError(
            'UNSUPPORTED_MEDIA_TYPE',
            `POST ${PROCESSED_PATH} takes ${PROTOCOL.mediaType} (a compact JWS)`,
          );
        await acceptProcessedReceipt(ctx, request.body.trim(), {
          remoteAddress: request.ip,
          tlsPartner: request.tlsPeer?.partnerId,
        });
        return reply.code(204).header('Cache-Control', 'no-store').send();
      },
    );
  };
}

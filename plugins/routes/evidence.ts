import type { FastifyContextConfig, FastifyPluginAsync } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { answerEvidenceRequest } from '../../src/evidence/serve.ts';
import { EVIDENCE_PATH } from '../../src/protocol/evidence.ts';
import { PROTOCOL } from '../../src/protocol/wire.ts';
import '../route-policy.ts';

/** A signed evidence request is a few hundred bytes, plus up to 100 receipt ids. */
const REQUEST_BODY_LIMIT = 64 * 1024;

/**
 * A peer route (mutual TLS when TLS_CLIENT_CA_FILE is set) authenticated by
 * the partner's signature on the request; refusals audited as evidence.refused.
 */
export const PEER_EVIDENCE = { peer: true, refusalAudit: 'evidence.refused' } as const satisfies FastifyContextConfig;

/** POST {inbox}/evidence: a partner asks for the proof that our audit log holds its receipts (docs/PROTOCOL.md section 12). */
export function evidenceRoutes(ctx: GatewayContext): FastifyPluginAsync {
  return async (app) => {
    app.addContentTypeParser(
      PROTOCOL.mediaType,
      { parseAs: 'string', bodyLimit: REQUEST_BODY_LIMIT },
      (_req, body, done) => done(null, body),
    );
    app.post(EVIDENCE_PATH, { config: PEER_EVIDENCE, bodyLimit: REQUEST_BODY_LIMIT }, async (request, reply) => {
      if (
        typeof request.body !== 'string' ||
        !/^application\/jose\s*(;|$)/i.test(request.headers['content-type'] ?? '')
      )
        throw new GatewayError(
          'UNSUPPORTED_MEDIA_TYPE',
          `POST ${EVIDENCE_PATH} takes ${PROTOCOL.mediaType} (a compact JWS)`,
        );
      const answer = await answerEvidenceRequest(ctx, request.body, {
        remoteAddress: request.ip,
        tlsPartner: request.tlsPeer?.partnerId,
      });
      return reply.header('Cache-Control', 'no-store').type('application/json').send(answer);
    });
  };
}

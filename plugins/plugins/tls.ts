import fp from 'fastify-plugin';
import type { TLSSocket } from 'node:tls';
import { auditRefusal } from '../../src/auth/audit.ts';
import { checkPeerCertificate } from '../../src/auth/tls.ts';
import { operationOutcome } from '../../src/fhir/outcome.ts';
import '../route-policy.ts';

/**
 * HTTPS concerns: HSTS on every response when serving TLS, and mutual TLS on
 * every route that declares `peer: true` when TLS_CLIENT_CA_FILE is set
 * (certificate from that CA, bound to a partner; the receiving pipeline then
 * checks the signed sender is that partner).
 */
export default fp(
  async (app) => {
    const config = app.config;
    if (!config.tlsCertFile) return;
    const hsts = `max-age=${config.hstsMaxAge}; includeSubDomains`;
    app.addHook('onSend', async (_request, reply) => {
      reply.header('Strict-Transport-Security', hsts);
    });
    if (!config.tlsClientCaFile) return;
    app.addHook('onRequest', async (request, reply) => {
      // Peer-gateway routes only; the EHR's pull API (/inbox/messages) uses bearer tokens.
      if (request.routeOptions.config.peer !== true) return;
      const peer = await checkPeerCertificate(app.db, request.raw.socket as TLSSocket);
      if (peer.ok) {
        request.tlsPeer = { partnerId: peer.partnerId, certSha256: peer.certSha256 };
        return;
      }
      await auditRefusal(
        app.db,
        app.log,
        'auth.failure',
        { remoteAddress: request.ip },
        { reason: peer.reason, endpoint: request.routeOptions.url ?? null, cert_sha256: peer.certSha256 ?? null },
      );
      return reply
        .code(peer.status)
        .type('application/fhir+json')
        .send(
          operationOutcome({
            code: peer.status === 401 ? 'login' : 'forbidden',
            errorCode: peer.status === 401 ? 'UNAUTHENTICATED' : 'FORBIDDEN',
            diagnostics: `mutual TLS: ${peer.reason.replace(/_/g, ' ')}`,
          }),
        );
    });
  },
  { name: 'tls', dependencies: ['config', 'db'], fastify: '5.x' },
);

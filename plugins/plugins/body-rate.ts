import fp from 'fastify-plugin';
import type { ErrorCode } from '../../src/errors.ts';
import { operationOutcome } from '../../src/fhir/outcome.ts';

/**
 * A request body must keep arriving: at least BODY_MIN_RATE bytes a second,
 * measured over each BODY_RATE_WINDOW. Node's own request timeout would
 * also cut a large imaging upload on a slow but honest link, so the rule is
 * a rate, not a deadline. Bytes are counted on the socket (reading the body
 * here would take it from the parser). A body that falls behind is answered
 * 408 and its connection closed.
 */
export default fp(
  async (app) => {
    const windowMs = app.config.bodyRateWindow;
    const minBytes = Math.ceil((app.config.bodyMinRate * windowMs) / 1000);
    app.addHook('onRequest', async (request) => {
      const req = request.raw;
      if (req.complete || (req.headers['content-length'] === undefined && !req.headers['transfer-encoding'])) return;
      const socket = req.socket;
      let seen = socket.bytesRead;
      const timer = setInterval(() => {
        if (req.complete || req.destroyed) return clearInterval(timer);
        const now = socket.bytesRead;
        if (now - seen >= minBytes) {
          seen = now;
          return;
        }
        clearInterval(timer);
        request.log.info({ received: now - seen, windowMs }, 'request body too slow: cut with 408');
        if (!socket.destroyed) {
          const body = JSON.stringify(
            operationOutcome({
              code: 'timeout',
              errorCode: 'REQUEST_TIMEOUT' satisfies ErrorCode,
              diagnostics: `the request body arrived slower than ${app.config.bodyMinRate} bytes/s`,
            }),
          );
          // Written on the socket itself: the parser still owns the request, and Fastify has no reply to send yet.
          socket.end(
            `HTTP/1.1 408 Request Timeout\r\ncontent-type: application/fhir+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
          );
        }
      }, windowMs);
      timer.unref();
      req.once('close', () => clearInterval(timer));
      req.once('end', () => clearInterval(timer));
    });
  },
  { name: 'body-rate', dependencies: ['config'], fastify: '5.x' },
);

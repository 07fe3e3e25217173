import fp from 'fastify-plugin';
import { Transform } from 'node:stream';
import { GatewayError } from '../../src/errors.ts';
import { ByteBudget } from '../../src/net/byte-budget.ts';
import { answerBeforeBody } from '../early-answer.ts';
import { refusedForLoad } from '../refusal-audit.ts';
import '../route-policy.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Bytes of unauthenticated bodies held now, against INBOX_BUFFER_BUDGET. */
    bodyBudget: ByteBudget;
  }
}

const RETRY_AFTER_S = 5;

const busy = (limit: number) =>
  refusedForLoad(
    new GatewayError(
      'UNAVAILABLE',
      `the gateway holds ${limit} bytes of unauthenticated request bodies at most (INBOX_BUFFER_BUDGET); retry later`,
      { retryAfter: RETRY_AFTER_S },
    ),
  );

/**
 * Bodies a route buffers whole before it can authenticate their sender
 * (routes that declare `bodyBudget`: POST /inbox) share one budget,
 * INBOX_BUFFER_BUDGET, so that many large posts at once cannot exhaust
 * memory. A body with a Content-Length reserves it before a byte is read;
 * a chunked body reserves its bytes as they arrive. A body that does not
 * fit is answered 503 with Retry-After (audited as a refusal). The
 * reservation is given back when the response closes, whatever ended it.
 */
export default fp(
  async (app) => {
    const budget = new ByteBudget(app.config.inboxBufferBudget);
    app.decorate('bodyBudget', budget);
    app.addHook('preParsing', async (request, reply, payload) => {
      if (!request.routeOptions.config.bodyBudget) return payload;
      const reservation = budget.open();
      reply.raw.once('close', () => reservation.release());
      const length = request.headers['content-length'];
      if (length !== undefined) {
        // Over the route's limit (or not a length at all), Fastify refuses it without reading it.
        if (!/^\d{1,15}$/.test(length) || Number(length) > request.routeOptions.bodyLimit) return payload;
        if (!reservation.grow(Number(length))) {
          answerBeforeBody(request, reply);
          throw busy(budget.limit);
        }
        return payload;
      }
      const counted = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          if (reservation.grow(chunk.length)) return done(null, chunk);
          answerBeforeBody(request, reply);
          // Discard what else arrives, so the connection closes after our answer rather than with unread bytes.
          payload.unpipe(counted);
          payload.resume();
          done(busy(budget.limit));
        },
      });
      // An aborted request must end the parse too (pipe does not pass errors on).
      payload.once('error', (err) => counted.destroy(err));
      payload.once('close', () => {
        if (!request.raw.complete) counted.destroy(new Error('the request was aborted'));
      });
      return payload.pipe(counted);
    });
  },
  { name: 'body-budget', dependencies: ['config'], fastify: '5.x' },
);

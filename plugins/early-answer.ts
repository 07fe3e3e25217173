import type { FastifyReply, FastifyRequest } from 'fastify';

/** A body nobody began to read, up to this size, is read and discarded after an early answer. */
export const DRAIN_MAX_BYTES = 32 * 1024 * 1024;

/**
 * An answer sent before the request body was read to its end (a refusal up
 * front, or one in the middle of the body). Closing the connection at once
 * resets it while the client is still writing, and the reset can destroy
 * our answer before the client reads it (EPIPE on its side). So a body that
 * nobody began to read and whose Content-Length is at most DRAIN_MAX_BYTES
 * is left to Node, which reads and discards it after the answer and keeps
 * the connection (BODY_MIN_RATE still cuts a body that stalls). A body
 * already being read, chunked or larger closes the connection.
 */
export function answerBeforeBody(request: FastifyRequest, reply: FastifyReply): void {
  const req = request.raw;
  if (req.complete) return;
  const length = req.headers['content-length'];
  const declared = length !== undefined && /^\d{1,15}$/.test(length) ? Number(length) : undefined;
  const untouched = !req.readableDidRead && req.readableFlowing === null;
  if (untouched && declared !== undefined && declared <= DRAIN_MAX_BYTES) return;
  reply.header('connection', 'close');
}

import type { FastifyReply, FastifyRequest } from 'fastify';
import { etagOf, notModified } from '../../src/fhir/rest/etag.ts';

/**
 * A FHIR read: the resource with its ETag and Last-Modified, or 304 without a
 * body when If-None-Match names the representation the client already holds.
 */
export function replyRead(
  request: FastifyRequest,
  reply: FastifyReply,
  resource: object,
  lastModified: Date,
): FastifyReply {
  const body = JSON.stringify(resource);
  const etag = etagOf(body);
  const inm = request.headers['if-none-match'];
  reply.header('ETag', etag).header('Last-Modified', lastModified.toUTCString());
  if (notModified(Array.isArray(inm) ? inm.join(',') : inm, etag)) return reply.code(304).send();
  return reply.type('application/fhir+json').send(body);
}

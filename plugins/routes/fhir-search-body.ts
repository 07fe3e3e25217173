import type { FastifyRequest } from 'fastify';
import { GatewayError } from '../../src/errors.ts';
import { checkAcceptable } from '../../src/fhir/rest/format.ts';
import { checkRequestValues } from '../request-values.ts';

export type SearchQuery = Record<string, string | string[] | undefined>;

/** The parameters of the query string and of a form body together (FHIR: both count for POST _search). */
function mergeParams(a: SearchQuery, b: SearchQuery): SearchQuery {
  const out: SearchQuery = Object.create(null);
  for (const src of [a, b])
    for (const [k, v] of Object.entries(src ?? {})) {
      if (v === undefined) continue;
      const prev = out[k];
      out[k] = [...(prev === undefined ? [] : Array.isArray(prev) ? prev : [prev]), ...(Array.isArray(v) ? v : [v])];
    }
  return out;
}

/**
 * The search parameters of a POST `{type}/_search`: a form body (held to the
 * same rules as a query string) merged with the query string. Any other body
 * is 415.
 */
export function postedSearchParams(req: FastifyRequest): SearchQuery {
  const form = /^application\/x-www-form-urlencoded\s*(;|$)/i.test(req.headers['content-type'] ?? '');
  if (req.body !== undefined && !form)
    throw new GatewayError('UNSUPPORTED_MEDIA_TYPE', 'send the parameters as application/x-www-form-urlencoded');
  const body = (req.body ?? {}) as SearchQuery;
  checkRequestValues({ params: undefined, query: body });
  const format = body._format;
  checkAcceptable(undefined, Array.isArray(format) ? format[0] : format);
  return mergeParams(req.query as SearchQuery, body);
}

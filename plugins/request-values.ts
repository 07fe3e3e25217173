import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { GatewayError } from '../src/errors.ts';
import { isPlainText, MAX_IDENTIFIER_LENGTH } from '../src/ids.ts';

const values = (v: unknown): unknown[] => (Array.isArray(v) ? v : [v]);

/**
 * Every path parameter (`:id`, `:sha256`, ...) and every query value of a
 * request is plain text (src/ids.ts): at most MAX_IDENTIFIER_LENGTH
 * characters, no control character. Anything else can name nothing, so it is
 * a 400 INVALID_VALUE naming the parameter, before a handler hands it to
 * PostgreSQL (which refuses NUL with an error, a 500).
 */
export function checkRequestValues(request: Pick<FastifyRequest, 'params' | 'query'>): void {
  for (const source of [request.params, request.query]) {
    if (!source || typeof source !== 'object') continue;
    for (const [name, value] of Object.entries(source as Record<string, unknown>)) {
      if (!isPlainText(name) || !values(value).every((v) => v === undefined || isPlainText(v)))
        throw new GatewayError(
          'INVALID_VALUE',
          `${isPlainText(name) ? name : 'a parameter'} must be at most ${MAX_IDENTIFIER_LENGTH} characters without control characters`,
          { expression: isPlainText(name) ? name : 'query' },
        );
    }
  }
}

const check: preHandlerAsyncHookHandler = async (request) => checkRequestValues(request);

/**
 * Appends the check to every route registered after this call, after the
 * route's own access guard: an anonymous caller still gets its 401 first, and
 * the refusal's audit entry names the authenticated caller.
 */
export function installRequestValueCheck(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    const pre = route.preHandler;
    route.preHandler = [...(Array.isArray(pre) ? pre : pre ? [pre] : []), check];
  });
}

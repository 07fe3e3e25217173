import fp from 'fastify-plugin';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';

const SPEC_FILE = join(import.meta.dirname, '..', '..', 'openapi.yaml');

/**
 * The reference page loads only its own files: scripts and styles from /docs/static, the spec
 * from /docs/json. Swagger UI sets some styles inline and draws icons from data: URLs.
 */
const DOCS_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

/** The hand-written openapi.yaml at /openapi.yaml, and an interactive reference at /docs (assets served locally). */
export default fp(
  async (app) => {
    const spec = readFileSync(SPEC_FILE, 'utf8');
    app.get('/openapi.yaml', { schema: { hide: true } }, async (_req, reply) =>
      reply.type('application/yaml').send(spec),
    );
    await app.register(swagger, {
      mode: 'static',
      specification: { path: SPEC_FILE, baseDir: join(import.meta.dirname, '..', '..') },
    });
    // Its own scope, so the headers go on every /docs answer (static files included) and nowhere else.
    await app.register(async (docs) => {
      docs.addHook('onSend', async (_req, reply) => {
        reply.headers(DOCS_HEADERS);
      });
      // No validator badge: it would send the spec's address to a third party.
      await docs.register(swaggerUi, { routePrefix: '/docs', uiConfig: { validatorUrl: null } });
    });
  },
  { name: 'openapi', fastify: '5.x' },
);

import fp from 'fastify-plugin';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';

const SPEC_FILE = join(import.meta.dirname, '..', '..', 'openapi.yaml');

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
    await app.register(swaggerUi, { routePrefix: '/docs' });
  },
  { name: 'openapi', fastify: '5.x' },
);

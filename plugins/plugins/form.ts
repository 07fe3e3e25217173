import fp from 'fastify-plugin';

/**
 * application/x-www-form-urlencoded bodies (the OAuth token endpoint) as a
 * null-prototype object; a repeated name becomes an array so callers can refuse it.
 */
export default fp(
  async (app) => {
    app.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: 64 * 1024 },
      (_req, body, done) => {
        const out: Record<string, string | string[]> = Object.create(null);
        for (const [k, v] of new URLSearchParams(body as string)) {
          const prev = out[k];
          out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
        }
        done(null, out);
      },
    );
  },
  { name: 'form', fastify: '5.x' },
);

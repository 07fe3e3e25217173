import fp from 'fastify-plugin';
import type { Config } from '../../src/config.ts';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
  }
}

/** The validated configuration, loaded once by the caller (server, worker or test). */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    app.decorate('config', config);
  },
  { name: 'config', fastify: '5.x' },
);

import fp from 'fastify-plugin';
import type pg from 'pg';
import { openDatabase } from '../../src/runtime/database.ts';

declare module 'fastify' {
  interface FastifyInstance {
    db: pg.Pool;
  }
}

/** Connect (starting embedded PostgreSQL if no DATABASE_URL), migrate, and close on shutdown. */
export default fp(
  async (app) => {
    const database = await openDatabase(app.config, app.log);
    app.decorate('db', database.pool);
    app.addHook('onClose', async () => database.close());
  },
  { name: 'db', dependencies: ['config'], fastify: '5.x' },
);

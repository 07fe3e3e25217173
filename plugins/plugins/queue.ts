import fp from 'fastify-plugin';
import { makeWorkerUtils, type WorkerUtils } from 'graphile-worker';
import { silentLogger } from '../../src/db/migrate.ts';

declare module 'fastify' {
  interface FastifyInstance {
    queue: WorkerUtils;
  }
}

/** graphile-worker utilities on the shared pool (migrations already ran in the db plugin). */
export default fp(
  async (app) => {
    const queue = await makeWorkerUtils({ pgPool: app.db, logger: silentLogger() });
    app.decorate('queue', queue);
    app.addHook('onClose', async () => queue.release());
  },
  { name: 'queue', dependencies: ['db'], fastify: '5.x' },
);

import fp from 'fastify-plugin';
import type { Hsm } from '../../hsm/hsm.ts';
import { openHsm, reportMissingMechanisms } from '../../src/runtime/hsm.ts';
import { openKeyring, type Keyring } from '../../src/keys/keyring.ts';

declare module 'fastify' {
  interface FastifyInstance {
    hsm: Hsm;
    keyring: Keyring;
  }
}

/**
 * Fail fast: log in, make sure our keys exist on the token (generating them on
 * first run) and sign a test digest, or refuse to start; name the mechanisms
 * the module lacks.
 */
export default fp(
  async (app) => {
    const hsm = openHsm(app.config);
    try {
      const keyring = await openKeyring(app.db, hsm, app.log);
      await reportMissingMechanisms(hsm, app.log);
      app.decorate('hsm', hsm);
      app.decorate('keyring', keyring);
    } catch (err) {
      hsm.close();
      throw err;
    }
    app.addHook('onClose', async () => hsm.close());
  },
  { name: 'hsm', dependencies: ['config', 'db'], fastify: '5.x' },
);

import { makeWorkerUtils } from 'graphile-worker';
import type { Config } from '../config.ts';
import type { GatewayContext, Logger } from '../gateway-context.ts';
import { silentLogger } from '../db/migrate.ts';
import { openKeyring } from '../keys/keyring.ts';
import { openDatabase } from './database.ts';
import { buildContext } from './build-context.ts';
import { openHsm, reportMissingMechanisms } from './hsm.ts';
import type { Hsm } from '../../hsm/hsm.ts';

/** The gateway's resources without Fastify, for the worker process and CLI commands that need the HSM. */
export async function openContext(
  config: Config,
  logger: Logger,
): Promise<{ ctx: GatewayContext; close(): Promise<void> }> {
  const db = await openDatabase(config, logger);
  let hsm: Hsm | undefined;
  try {
    const opened = openHsm(config);
    hsm = opened;
    const keyring = await openKeyring(db.pool, opened, logger);
    await reportMissingMechanisms(opened, logger);
    const queue = await makeWorkerUtils({ pgPool: db.pool, logger: silentLogger() });
    const ctx = buildContext({ config, pool: db.pool, hsm: opened, keyring, queue, logger });
    return {
      ctx,
      close: async () => {
        await queue.release();
        opened.close();
        await db.close();
      },
    };
  } catch (err) {
    hsm?.close();
    await db.close();
    throw err;
  }
}

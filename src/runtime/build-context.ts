import type pg from 'pg';
import type { WorkerUtils } from 'graphile-worker';
import type { Hsm } from '../../hsm/hsm.ts';
import type { Config } from '../config.ts';
import type { GatewayContext, Logger } from '../gateway-context.ts';
import type { Keyring } from '../keys/keyring.ts';
import { directoryFromConfig } from '../directory/directory.ts';

/** The opened resources; whoever opened them (the worker, or the Fastify plugins) also closes them. */
export interface ContextResources {
  config: Config;
  pool: pg.Pool;
  hsm: Hsm;
  keyring: Keyring;
  queue: WorkerUtils;
  logger: Logger;
  /** Outbound HTTP; the global fetch unless a test points deliveries elsewhere. */
  fetch?: typeof fetch;
}

/** The one place a GatewayContext is assembled, for the server and the worker alike. */
export function buildContext(r: ContextResources): GatewayContext {
  const fetch = r.fetch ?? globalThis.fetch;
  return {
    config: r.config,
    pool: r.pool,
    hsm: r.hsm,
    keyring: r.keyring,
    queue: r.queue,
    logger: r.logger,
    fetch,
    directory: directoryFromConfig(r.config, { pool: r.pool, fetch, logger: r.logger }),
  };
}

import type pg from 'pg';
import type { WorkerUtils } from 'graphile-worker';
import type { Hsm } from '../hsm/hsm.ts';
import type { Config } from './config.ts';
import type { Keyring } from './keys/keyring.ts';
import type { Directory } from './directory/directory.ts';

export interface Logger {
  info: (obj: object, msg?: string) => void;
  warn: (obj: object, msg?: string) => void;
  error: (obj: object, msg?: string) => void;
  debug: (obj: object, msg?: string) => void;
}

/**
 * Everything a pipeline, route or task needs, passed explicitly. Fastify
 * decorations are built into one of these by the plugins; the worker process
 * builds the same thing without Fastify.
 */
export interface GatewayContext {
  config: Config;
  pool: pg.Pool;
  hsm: Hsm;
  keyring: Keyring;
  queue: WorkerUtils;
  logger: Logger;
  /** Outbound HTTP; injectable so tests can point deliveries anywhere. */
  fetch: typeof fetch;
  /** Partner organisations, their inboxes and published keys. */
  directory: Directory;
}

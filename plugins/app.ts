import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { randomUUID } from 'node:crypto';
import type { Config } from '../src/config.ts';
import type { GatewayContext } from '../src/gateway-context.ts';
import { registerRoutes } from './routes/index.ts';
import { buildContext } from '../src/runtime/build-context.ts';
import configPlugin from './plugins/config.ts';
import outcome from './plugins/outcome.ts';
import bodyRate from './plugins/body-rate.ts';
import bodyBudget from './plugins/body-budget.ts';
import fhirJson from './plugins/fhir-json.ts';
import form from './plugins/form.ts';
import tls from './plugins/tls.ts';
import { httpsOptions } from '../src/auth/tls.ts';
import db from './plugins/db.ts';
import hsm from './plugins/hsm.ts';
import queue from './plugins/queue.ts';
import openapi from './plugins/openapi.ts';

declare module 'fastify' {
  interface FastifyInstance {
    ctx: GatewayContext;
  }
}

export interface BuildOptions {
  /** pino options, or false for silence (tests). Default: JSON logs at LOG_LEVEL. */
  logger?: FastifyServerOptions['logger'];
  /** Outbound HTTP for deliveries and JWKS fetches. */
  fetch?: typeof fetch;
}

/** Headers that must never reach a log line. Bodies are never logged at all. */
const REDACT = ['req.headers.authorization', 'req.headers.cookie', 'req.headers["idempotency-key"]'];

/**
 * The whole gateway as a Fastify instance, not yet listening. Security-relevant
 * plugins are registered explicitly and in order; nothing is autoloaded.
 */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  // HTTPS when TLS_CERT_FILE/TLS_KEY_FILE are set; otherwise plain HTTP (loopback by default).
  const https = httpsOptions(config);
  const app = Fastify({
    ...(https ? { https } : {}),
    logger: options.logger ?? { level: config.logLevel, redact: REDACT },
    bodyLimit: config.bodyLimit,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // The first start creates the embedded PostgreSQL cluster (initdb, then its WAL segments: about 10 s)
    // and the HSM keys; Fastify's default of 10 s per plugin is too short for that.
    pluginTimeout: 120_000,
  });
  try {
    await app.register(configPlugin, { config });
    await app.register(outcome);
    await app.register(bodyRate);
    await app.register(bodyBudget);
    await app.register(fhirJson);
    await app.register(form);
    await app.register(db);
    await app.register(tls);
    await app.register(hsm);
    await app.register(queue);
    await app.register(openapi);
  } catch (err) {
    // Release what did start (embedded PostgreSQL, HSM sessions) before failing.
    await app.close().catch(() => undefined);
    throw err;
  }
  const ctx = buildContext({
    config,
    pool: app.db,
    hsm: app.hsm,
    keyring: app.keyring,
    queue: app.queue,
    logger: app.log,
    fetch: options.fetch,
  });
  app.decorate('ctx', ctx);
  await registerRoutes(app, ctx);
  return app;
}

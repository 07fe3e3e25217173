import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Config } from '../src/config.ts';
import { GatewayError } from '../src/errors.ts';
import { MAX_IDENTIFIER_LENGTH } from '../src/ids.ts';
import type { GatewayContext } from '../src/gateway-context.ts';
import { registerRoutes } from './routes/index.ts';
import { auditRouterRefusal } from './refusal-audit.ts';
import { logOptions, requestIdOf } from './request-log.ts';
import { buildContext } from '../src/runtime/build-context.ts';
import { warmR4Definitions } from '../src/fhir/r4-definitions.ts';
import { terminalLogStream } from '../src/cli/log-destination.ts';
import configPlugin from './plugins/config.ts';
import outcome, { replyWithError } from './plugins/outcome.ts';
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
  /** pino options, or false for silence (tests). Default: logs at LOG_LEVEL, JSON lines unless stdout is a terminal. */
  logger?: FastifyServerOptions['logger'];
  /** Outbound HTTP for deliveries and JWKS fetches. */
  fetch?: typeof fetch;
  /** Where the JSON log lines go (default stdout); the level and redactions stay the gateway's own. */
  logStream?: { write(line: string): void };
}

/** The router's own refusals, with a fixed text: their default message echoes the URL. */
function routerRefusal(err: Error & { code?: string }): Error | GatewayError {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH')
    return new GatewayError('INVALID_VALUE', `a path parameter is longer than ${MAX_IDENTIFIER_LENGTH} characters`, {
      expression: 'path',
    });
  if (err.code === 'FST_ERR_BAD_URL') return new GatewayError('BAD_REQUEST', 'the URL does not decode');
  return err;
}

/**
 * The whole gateway as a Fastify instance, not yet listening. Security-relevant
 * plugins are registered explicitly and in order; nothing is autoloaded.
 */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  // HTTPS when TLS_CERT_FILE/TLS_KEY_FILE are set; otherwise plain HTTP (loopback by default).
  const https = httpsOptions(config);
  const app = Fastify({
    ...(https ? { https } : {}),
    logger:
      options.logger ??
      logOptions(
        config.logLevel,
        options.logStream ?? terminalLogStream({ fd: 1, isTTY: process.stdout.isTTY === true }),
      ),
    bodyLimit: config.bodyLimit,
    // X-Request-Id is read by requestIdOf (a bounded safe form only), not taken verbatim by Fastify.
    requestIdHeader: false,
    genReqId: requestIdOf,
    // A path parameter may be as long as any identifier; a longer one, or a URL that does not decode,
    // is refused by the router before any route: answered as an OperationOutcome like every other refusal.
    routerOptions: { maxParamLength: MAX_IDENTIFIER_LENGTH },
    frameworkErrors: async (err, request, reply) => {
      const refusal = routerRefusal(err);
      if (refusal instanceof GatewayError) await auditRouterRefusal(request.server.ctx, request, refusal);
      return replyWithError(refusal, request, reply);
    },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // The first start creates the embedded PostgreSQL cluster (initdb, then its WAL segments: about 10 s)
    // and the HSM keys; Fastify's default of 10 s per plugin is too short for that.
    pluginTimeout: 120_000,
  });
  // The R4 definitions load while PostgreSQL and the HSM start (it yields between steps), so the
  // first Bundle validated pays only its own walk; the app is returned only once they are loaded.
  const definitions = warmR4Definitions();
  definitions.catch(() => undefined); // awaited below; a start that fails earlier leaves it unobserved
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
  await definitions;
  return app;
}

import { loadConfig } from '../src/config.ts';
import { parse, type Command } from '../src/cli/command.ts';
import { onShutdown } from '../src/cli/shutdown.ts';
import { announceReady } from '../src/cli/start-banner.ts';
import { startWorker, type WorkerHandle } from '../src/worker/runner.ts';
import { buildApp } from './app.ts';

/**
 * Listen, and shut down gracefully on SIGTERM: stop accepting, let in-flight
 * requests and jobs finish, then close the HSM, the pool and embedded PostgreSQL.
 */
async function serve(withWorker: boolean): Promise<number> {
  const config = loadConfig();
  const app = await buildApp(config);
  let worker: WorkerHandle | undefined;
  try {
    if (withWorker) worker = await startWorker(app.ctx);
    await app.listen({ port: config.port, host: config.host });
  } catch (err) {
    app.log.error({ err }, 'failed to start');
    await worker?.stop().catch(() => undefined);
    await app.close();
    throw err;
  }
  announceReady(
    config,
    { worker: withWorker },
    {
      isTTY: process.stdout.isTTY === true,
      write: (text) => process.stdout.write(text),
      log: (fields, message) => app.log.info(fields, message),
    },
  );
  if (!config.tlsCertFile && !['127.0.0.1', '::1', 'localhost'].includes(config.host)) {
    // Plain HTTP beyond loopback is only acceptable behind a TLS-terminating proxy.
    app.log.warn(
      { host: config.host },
      'serving plain HTTP on a non-loopback address: set TLS_CERT_FILE/TLS_KEY_FILE or terminate TLS in front',
    );
  }
  await onShutdown(app.log, async () => {
    await worker?.stop();
    await app.close();
  });
  return 0;
}

export const startCommand: Command = {
  name: 'start',
  summary: 'HTTP server and worker in one process (the single-machine default)',
  usage: `gateway start

Starts the HTTP API and the job worker in one process. With no DATABASE_URL it
runs embedded PostgreSQL in DATA_DIR/pg; with no HSM_MODULE it uses a SoftHSM
development token in DATA_DIR/softhsm. Both are created on the first run.
Once ready it logs its URLs (API, FHIR base, API reference, audit page) in its
"gateway ready" line, and prints them when stdout is a terminal.`,
  run: async (args) => {
    parse(args, {});
    return serve(true);
  },
};

export const serveCommand: Command = {
  name: 'serve',
  summary: 'HTTP server only (run workers separately with `gateway worker`)',
  usage: `gateway serve

Starts the HTTP API without the job worker, for deployments that scale the API
and the workers separately on one shared PostgreSQL.`,
  run: async (args) => {
    parse(args, {});
    return serve(false);
  },
};

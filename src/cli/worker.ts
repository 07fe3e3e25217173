import { loadConfig } from '../config.ts';
import { openContext } from '../runtime/open-context.ts';
import { startWorker } from '../worker/runner.ts';
import { parse, type Command } from './command.ts';
import { cliLogger } from './logger.ts';
import { onShutdown } from './shutdown.ts';

export const workerCommand: Command = {
  name: 'worker',
  summary: 'run the job worker only (deliveries, rotation, checkpoints)',
  usage: `gateway worker

Runs graphile-worker tasks against DATABASE_URL with the HSM from HSM_MODULE.
Run as many as you like beside any number of 'gateway serve' processes.
SIGTERM lets in-flight jobs finish, then exits.`,
  async run(args) {
    parse(args, {});
    const config = loadConfig();
    const logger = cliLogger(config, config.logLevel);
    const runtime = await openContext(config, logger);
    const worker = await startWorker(runtime.ctx);
    logger.info({ concurrency: config.workerConcurrency }, 'worker started');
    await onShutdown(logger, async () => {
      await worker.stop();
      await runtime.close();
    });
    return 0;
  },
};

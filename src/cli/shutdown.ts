import type { Logger } from '../gateway-context.ts';

/** Resolve after the first SIGTERM/SIGINT has run `stop`; a second signal exits at once. */
export function onShutdown(logger: Logger, stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const handler = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, 'shutting down');
      stop()
        .catch((err) => logger.error({ err }, 'error during shutdown'))
        .finally(() => resolve());
    };
    process.once('SIGTERM', handler);
    process.once('SIGINT', handler);
  });
}

import { isDatabaseUnavailable } from '../db/unavailable.ts';
import type { Logger } from '../gateway-context.ts';

/**
 * graphile-worker (0.18) records a job's outcome with a completeJob/failJob
 * promise nobody awaits: when the database is unavailable at that moment,
 * the rejection is unhandled, and Node ends the process for it. Its
 * batching mode routes those failures to a handler instead, but then can
 * hang the pool's shutdown for good, so this guard, installed only while a
 * worker runs, is the containment: a database-unavailable rejection is
 * logged and handed to `onOutage` (the worker restarts and releases the job,
 * which runs again); any other unhandled rejection ends the process as
 * before. With other listeners present (a test runner's), they decide.
 */
export function guardDatabaseRejections(logger: Logger, onOutage: (err: unknown) => void): () => void {
  const listener = (reason: unknown) => {
    if (isDatabaseUnavailable(reason)) {
      const { message, code } = reason as { message?: string; code?: string };
      logger.warn(
        { err: { message, code } },
        'job worker: a job outcome was not recorded, the database is unavailable',
      );
      onOutage(reason);
      return;
    }
    if (process.listenerCount('unhandledRejection') === 1) throw reason; // Node's own behaviour: an uncaught error
  };
  process.on('unhandledRejection', listener);
  return () => process.removeListener('unhandledRejection', listener);
}

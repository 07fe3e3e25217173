import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/** What the supervisor needs of a PostgreSQL server this process runs. */
export interface PostmasterControl {
  /** The running postmaster, or undefined when none runs. */
  child(): ChildProcess | undefined;
  /** Start the server on its data directory; after a crash, PostgreSQL's own recovery runs first. */
  start(): Promise<void>;
  /** Stop the running server, if one runs. */
  stop(): Promise<void>;
}

export interface SupervisorLogger {
  info: (obj: object, msg: string) => void;
  warn: (obj: object, msg: string) => void;
}

export interface Supervisor {
  /** Stop watching (a restart under way finishes first); the server itself is left running. */
  stop(): Promise<void>;
}

const RETRY_FIRST_MS = 200;
const RETRY_MAX_MS = 2_000;

function exitOf(child: ChildProcess | undefined): Promise<{ code: number | null; signal: string | null }> {
  if (!child) return Promise.resolve({ code: null, signal: null });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/**
 * Keep the embedded PostgreSQL running: when the postmaster exits without
 * being asked to (killed, crashed), start it again, retrying while the old
 * server's processes still hold its shared memory. Requests meanwhile get 503
 * (plugins/error-reply.ts); the pool reconnects on its own once it is back.
 */
export function supervisePostgres(control: PostmasterControl, logger: SupervisorLogger): Supervisor {
  let stopping = false;
  const wake = new AbortController();
  let restarting: Promise<void> = Promise.resolve();

  const restart = async () => {
    const began = Date.now();
    for (let delay = RETRY_FIRST_MS; !stopping; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
      try {
        await control.start();
        logger.info({ ms: Date.now() - began }, 'embedded PostgreSQL restarted');
        return;
      } catch (err) {
        logger.warn(
          { err: { message: err instanceof Error ? err.message : 'exited while starting' } },
          'embedded PostgreSQL restart failed; retrying',
        );
        await sleep(delay, undefined, { signal: wake.signal }).catch(() => undefined);
      }
    }
  };

  const stopped = new Promise<{ code: null; signal: null }>((resolve) =>
    wake.signal.addEventListener('abort', () => resolve({ code: null, signal: null }), { once: true }),
  );
  const watch = async () => {
    while (!stopping) {
      const { code, signal } = await Promise.race([exitOf(control.child()), stopped]);
      if (stopping) return;
      logger.warn({ code, signal }, 'embedded PostgreSQL exited unexpectedly; restarting it');
      restarting = restart();
      await restarting;
    }
  };
  const watching = watch();

  return {
    stop: async () => {
      stopping = true;
      wake.abort();
      await restarting;
      await watching;
    },
  };
}

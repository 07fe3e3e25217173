import { hostname } from 'node:os';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, type Runner, type WorkerEvents } from 'graphile-worker';
import type { GatewayContext } from '../gateway-context.ts';
import { silentLogger } from '../db/migrate.ts';
import { isDatabaseUnavailable } from '../db/unavailable.ts';
import { guardDatabaseRejections } from './rejection-guard.ts';
import { crontab, taskList } from './task-list.ts';

const HEARTBEAT_MS = 15_000;
const STALE_AFTER = '60 seconds';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Release jobs locked by workers that died without unlocking them: those on
 * this host whose process is gone, and any whose heartbeat has gone stale.
 */
export async function unlockDeadWorkers(ctx: Pick<GatewayContext, 'pool' | 'queue' | 'logger'>): Promise<string[]> {
  const { rows } = await ctx.pool.query<{ worker_id: string; host: string; pid: number; stale: boolean }>(
    `SELECT worker_id, host, pid, seen_at < now() - interval '${STALE_AFTER}' AS stale FROM worker_heartbeats`,
  );
  const dead = rows
    .filter((r) => r.stale || (r.host === hostname() && r.pid !== process.pid && !alive(r.pid)))
    .map((r) => r.worker_id);
  if (dead.length) {
    await ctx.queue.forceUnlockWorkers(dead);
    await ctx.pool.query('DELETE FROM worker_heartbeats WHERE worker_id = ANY($1)', [dead]);
    ctx.logger.warn({ workers: dead }, 'released jobs of dead workers');
  }
  return dead;
}

export interface WorkerHandle {
  /** The graphile-worker runner now running (a new one after each restart). */
  readonly runner: Runner;
  stop(): Promise<void>;
}

interface RunningPool {
  runner: Runner;
  /** Stop this runner if `error` means the database is unavailable (once). */
  stopOnOutage(error: unknown): void;
  /** The worker pool's id and its workers' ids: what its jobs are locked by and what its heartbeat names. */
  ids: Set<string>;
}

/**
 * One graphile-worker runner, stopped as soon as it meets the database
 * unavailable: a job lock taken by a getJob whose answer was lost, or held
 * by a job whose outcome could not be recorded, would otherwise stay until
 * graphile-worker's four-hour lock timeout. Stopped, its pool's locks are
 * released as a whole (releasePool) before a new pool starts.
 */
async function runPool(ctx: GatewayContext): Promise<RunningPool> {
  const ids = new Set<string>();
  let runner: Runner | undefined = undefined; // set once run() resolves; an outage seen before then is seen again
  let stopping = false;
  const stopOnOutage = (error: unknown) => {
    if (stopping || !runner || !isDatabaseUnavailable(error)) return;
    stopping = true;
    ctx.logger.warn({ err: { message: (error as Error).message } }, 'job worker lost the database; stopping it');
    void runner.stop().catch(() => undefined);
  };
  // Our own emitter, listened to before run() starts: jobs are locked by the
  // worker pool's id (graphile-worker >= 0.16), and 'pool:create' fires before
  // run() resolves, so a listener added afterwards would never record it.
  const events: WorkerEvents = new EventEmitter() as WorkerEvents;
  const record = async (workerId: string) => {
    ids.add(workerId);
    await ctx.pool
      .query(
        'INSERT INTO worker_heartbeats (worker_id, host, pid) VALUES ($1, $2, $3) ON CONFLICT (worker_id) DO UPDATE SET seen_at = now()',
        [workerId, hostname(), process.pid],
      )
      .catch((err) => ctx.logger.warn({ err: { message: (err as Error).message } }, 'worker heartbeat failed'));
  };
  events.on('pool:create', ({ workerPool }) => void record(workerPool.id));
  events.on('worker:create', ({ worker }) => void record(worker.workerId));
  events.on('worker:getJob:error', ({ error }) => stopOnOutage(error));
  events.on('pool:listen:error', ({ error }) => stopOnOutage(error));
  events.on('job:error', ({ error }) => stopOnOutage(error));
  runner = await run({
    events,
    pgPool: ctx.pool,
    taskList: taskList(ctx),
    crontab: crontab(ctx),
    concurrency: ctx.config.workerConcurrency,
    noHandleSignals: true,
    pollInterval: 1_000,
    logger: silentLogger(),
  });
  return { runner, ids, stopOnOutage };
}

/** Release the jobs a stopped worker pool still holds and drop its heartbeats. */
async function releasePool(ctx: GatewayContext, ids: string[]): Promise<void> {
  if (!ids.length) return;
  await ctx.queue.forceUnlockWorkers(ids);
  await ctx.pool.query('DELETE FROM worker_heartbeats WHERE worker_id = ANY($1)', [ids]);
}

const RESTART_FIRST_MS = 250;
const RESTART_MAX_MS = 5_000;

/**
 * Run graphile-worker on the shared pool; stop() lets in-flight jobs finish.
 * A runner that stops by itself (on meeting the database unavailable, or its
 * pool shut down by graphile-worker) is replaced, retried with backoff until
 * the database answers again, after releasing the jobs the stopped pool
 * held, so they run again at once.
 */
export async function startWorker(ctx: GatewayContext): Promise<WorkerHandle> {
  await unlockDeadWorkers(ctx);
  let current = await runPool(ctx);
  let stopping = false;
  const wake = new AbortController();
  let attempt: Promise<unknown> = Promise.resolve();

  const keepRunning = async () => {
    for (;;) {
      await current.runner.promise.catch(() => undefined);
      if (stopping) return;
      ctx.logger.warn({}, 'job worker stopped by a database failure; restarting it when the database answers');
      const stale = [...current.ids];
      for (let delay = RESTART_FIRST_MS; ; delay = Math.min(delay * 2, RESTART_MAX_MS)) {
        await sleep(delay, undefined, { signal: wake.signal }).catch(() => undefined);
        if (stopping) return;
        const step = (async () => {
          await releasePool(ctx, stale);
          return runPool(ctx);
        })();
        attempt = step.catch(() => undefined);
        try {
          current = await step;
          ctx.logger.info({}, 'job worker restarted');
          break;
        } catch (err) {
          ctx.logger.warn({ err: { message: (err as Error).message } }, 'job worker restart failed; retrying');
        }
      }
    }
  };
  const supervising = keepRunning();
  const unguard = guardDatabaseRejections(ctx.logger, (err) => current.stopOnOutage(err));

  const beat = setInterval(() => {
    if (current.ids.size)
      void ctx.pool
        .query('UPDATE worker_heartbeats SET seen_at = now() WHERE worker_id = ANY($1)', [[...current.ids]])
        .catch(() => undefined);
  }, HEARTBEAT_MS);
  beat.unref();
  return {
    get runner() {
      return current.runner;
    },
    stop: async () => {
      stopping = true;
      wake.abort();
      clearInterval(beat);
      await attempt; // a restart under way finishes first, so the runner it started is the one stopped
      await current.runner.stop().catch(() => undefined); // it may have stopped by itself already
      await supervising;
      unguard();
      await ctx.pool
        .query('DELETE FROM worker_heartbeats WHERE worker_id = ANY($1)', [[...current.ids]])
        .catch(() => undefined);
    },
  };
}

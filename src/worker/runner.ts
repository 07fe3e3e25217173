import { hostname } from 'node:os';
import { EventEmitter } from 'node:events';
import { run, type Runner, type WorkerEvents } from 'graphile-worker';
import type { GatewayContext } from '../gateway-context.ts';
import { silentLogger } from '../db/migrate.ts';
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
  runner: Runner;
  stop(): Promise<void>;
}

/** Run graphile-worker on the shared pool; stop() lets in-flight jobs finish. */
export async function startWorker(ctx: GatewayContext): Promise<WorkerHandle> {
  await unlockDeadWorkers(ctx);
  const ids = new Set<string>();
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
  const runner = await run({
    events,
    pgPool: ctx.pool,
    taskList: taskList(ctx),
    crontab: crontab(ctx),
    concurrency: ctx.config.workerConcurrency,
    noHandleSignals: true,
    pollInterval: 1_000,
    logger: silentLogger(),
  });
  const beat = setInterval(() => {
    if (ids.size)
      void ctx.pool
        .query('UPDATE worker_heartbeats SET seen_at = now() WHERE worker_id = ANY($1)', [[...ids]])
        .catch(() => undefined);
  }, HEARTBEAT_MS);
  beat.unref();
  return {
    runner,
    stop: async () => {
      clearInterval(beat);
      await runner.stop();
      await ctx.pool
        .query('DELETE FROM worker_heartbeats WHERE worker_id = ANY($1)', [[...ids]])
        .catch(() => undefined);
    },
  };
}

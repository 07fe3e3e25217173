import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type pg from 'pg';
import type { SessionPoolStats } from '../../hsm/pool.ts';
import { METRICS } from './catalogue.ts';

/** Which requests the request metrics count: the two pipelines operators watch. */
export type RouteGroup = 'intake' | 'inbox';

/** Latency buckets of intake and inbox requests, in seconds. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface RequestObserver {
  /** One answered request: its status, and the error code of a refusal (a 4xx). */
  observe(route: RouteGroup, status: number, seconds: number, code?: string): void;
  /** A scrape could not read the database aggregates. */
  collectFailed(): void;
}

export interface ProcessSources {
  hsmStats: () => SessionPoolStats;
  pool: Pick<pg.Pool, 'totalCount' | 'idleCount' | 'waitingCount'>;
}

/** The metrics only this process can see: its requests, its HSM sessions, its database connections. */
export function registerProcessMetrics(registry: Registry, sources: ProcessSources): RequestObserver {
  const registers = [registry];
  const requests = new Counter({
    name: METRICS.requests.name,
    help: METRICS.requests.help,
    labelNames: METRICS.requests.labels,
    registers,
  });
  const refusals = new Counter({
    name: METRICS.refusals.name,
    help: METRICS.refusals.help,
    labelNames: METRICS.refusals.labels,
    registers,
  });
  const duration = new Histogram({
    name: METRICS.requestDuration.name,
    help: METRICS.requestDuration.help,
    labelNames: METRICS.requestDuration.labels,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const scrapeErrors = new Counter({ name: METRICS.scrapeErrors.name, help: METRICS.scrapeErrors.help, registers });
  new Gauge({
    name: METRICS.hsmSessions.name,
    help: METRICS.hsmSessions.help,
    labelNames: METRICS.hsmSessions.labels,
    registers,
    collect() {
      const s = sources.hsmStats();
      this.set({ state: 'busy' }, s.busy);
      this.set({ state: 'idle' }, s.open - s.busy);
      this.set({ state: 'waiting' }, s.waiting);
    },
  });
  // Totals kept by the pool itself: a counter set to them at scrape time.
  for (const [spec, read] of [
    [METRICS.hsmWaits, (s: SessionPoolStats) => s.waits],
    [METRICS.hsmErrors, (s: SessionPoolStats) => s.errors],
  ] as const) {
    new Counter({
      name: spec.name,
      help: spec.help,
      registers,
      collect() {
        this.reset();
        this.inc(read(sources.hsmStats()));
      },
    });
  }
  new Gauge({
    name: METRICS.dbPool.name,
    help: METRICS.dbPool.help,
    labelNames: METRICS.dbPool.labels,
    registers,
    collect() {
      this.set({ state: 'total' }, sources.pool.totalCount);
      this.set({ state: 'idle' }, sources.pool.idleCount);
      this.set({ state: 'waiting' }, sources.pool.waitingCount);
    },
  });
  return {
    observe(route, status, seconds, code) {
      requests.inc({ route, status: `${Math.floor(status / 100)}xx` });
      duration.observe({ route }, seconds);
      // Refusals answered before the error handler (the guard's 401 and 403) carry no error code: named by status.
      if (status >= 400 && status < 500) refusals.inc({ route, code: code ?? `HTTP_${status}` });
    },
    collectFailed: () => scrapeErrors.inc(),
  };
}

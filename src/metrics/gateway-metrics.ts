import { Registry } from 'prom-client';
import type { GatewayContext } from '../gateway-context.ts';
import { cached } from './cached.ts';
import { registerProcessMetrics, type RequestObserver } from './process-metrics.ts';
import { registerStateMetrics } from './state-metrics.ts';
import { readState, type StateSnapshot } from './state-queries.ts';

/** How long one reading of the durable tables answers scrapes. */
export const STATE_CACHE_MS = 5_000;

export interface GatewayMetrics {
  registry: Registry;
  requests: RequestObserver;
  /** The Prometheus text exposition of every metric. */
  render(): Promise<string>;
  contentType: string;
  /** How long a reading of the tables answers scrapes (tests set 0 to read them every time). */
  setCacheMs(ms: number): void;
}

/** The gateway's metrics registry: state from the durable tables, plus this process's own counters. */
export function createGatewayMetrics(
  ctx: Pick<GatewayContext, 'pool' | 'hsm' | 'config' | 'logger'>,
  cacheMs = STATE_CACHE_MS,
): GatewayMetrics {
  const registry = new Registry();
  const requests = registerProcessMetrics(registry, { hsmStats: () => ctx.hsm.poolStats(), pool: ctx.pool });
  let read = cached(() => readState(ctx.pool), cacheMs);
  const snapshot = async (): Promise<StateSnapshot | undefined> => {
    try {
      return await read();
    } catch (err) {
      requests.collectFailed();
      ctx.logger.warn({ err: { message: (err as Error).message } }, 'metrics: database aggregates unavailable');
      return undefined;
    }
  };
  registerStateMetrics(registry, snapshot, {
    sig: ctx.config.keySigRotation,
    enc: ctx.config.keyEncRotation,
    audit: ctx.config.keyAuditRotation,
    blinding: ctx.config.keyBlindingRotation,
  });
  return {
    registry,
    requests,
    render: () => registry.metrics(),
    contentType: registry.contentType,
    setCacheMs: (ms) => {
      read = cached(() => readState(ctx.pool), ms);
    },
  };
}

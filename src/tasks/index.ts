import type { TaskList } from 'graphile-worker';
import type { GatewayContext } from '../context.ts';

/**
 * Every graphile-worker task. Payloads carry ids only (never PHI); each task
 * asserts its payload's shape and calls a pipeline in src/exchange or src/keys.
 */
export function taskList(_ctx: GatewayContext): TaskList {
  return {};
}

/** Recurring jobs (graphile-worker crontab syntax). */
export function crontab(_ctx: GatewayContext): string {
  return '';
}

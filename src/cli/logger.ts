import pino from 'pino';
import type { Config } from '../config.ts';

/** Logs for CLI commands go to stderr, so stdout stays clean for output. */
export function cliLogger(config: Pick<Config, 'logLevel'>, level?: string) {
  return pino({ level: level ?? (config.logLevel === 'info' ? 'warn' : config.logLevel) }, pino.destination(2));
}

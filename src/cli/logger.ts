import pino from 'pino';
import type { Config } from '../config.ts';
import { terminalLogStream } from './log-destination.ts';

/** Logs for CLI commands go to stderr, so stdout stays clean for output; readable on a terminal. */
export function cliLogger(config: Pick<Config, 'logLevel'>, level?: string) {
  const stream = terminalLogStream({ fd: 2, isTTY: process.stderr.isTTY === true }) ?? pino.destination(2);
  return pino({ level: level ?? (config.logLevel === 'info' ? 'warn' : config.logLevel) }, stream);
}

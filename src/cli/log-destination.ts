import pinoPretty from 'pino-pretty';

export interface LogOutput {
  fd: number;
  isTTY: boolean;
}

/**
 * Where a process's log lines go: on a terminal, formatted for a person
 * (pino-pretty, after pino has redacted them); otherwise undefined, which
 * leaves pino's JSON lines for a collector.
 */
export function terminalLogStream(output: LogOutput): { write(line: string): void } | undefined {
  if (!output.isTTY) return undefined;
  return pinoPretty({
    destination: output.fd,
    sync: true,
    colorize: true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
  });
}

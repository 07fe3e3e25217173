import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Bytes of all regular files under a directory, as `du` counts what a data directory costs. */
export function diskBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += diskBytes(path);
    else if (entry.isFile()) total += lstatSync(path).size;
  }
  return total;
}

/** WAL segment files of the embedded cluster in DATA_DIR/pg. */
export function walSegments(dataDir: string): string[] {
  return readdirSync(join(dataDir, 'pg', 'pg_wal')).filter((n) => /^[0-9A-F]{24}$/.test(n));
}

/** The running postmaster of DATA_DIR/pg: its pid, command line and what it recorded about its sockets. */
export function postmasterOf(dataDir: string) {
  const lines = readFileSync(join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n');
  const pid = Number(lines[0]);
  return {
    pid,
    cmdline: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'),
    port: Number(lines[3]),
    socketDir: (lines[4] ?? '').trim(),
    listenAddress: (lines[5] ?? '').trim(),
  };
}

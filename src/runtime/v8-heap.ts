import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings read only when its heap is created, so they must be on Node's command line: the young
 * generation's two semi-spaces at most 8 MiB each. V8 sizes them from the machine's memory, and once the
 * start-up (the R4 definitions above all) has grown them to that size they stay there, holding their pages
 * and leaving more behind in the old generation, which leaves too little room under 256 MiB for streaming
 * a study (docs/decisions/0055, with the measurements and the cost to intake).
 */
export const HEAP_START_FLAGS: readonly string[] = ['--max-semi-space-size=8'];

/** V8 accepts `--max_semi_space_size` for `--max-semi-space-size`. */
const flagName = (arg: string): string => (arg.split('=')[0] as string).replaceAll('_', '-');

/**
 * The start flags neither on this command line nor in NODE_OPTIONS: an operator who set one, to any
 * value, keeps theirs.
 */
export function missingStartFlags(execArgv: readonly string[], nodeOptions = ''): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].filter((a) => a.startsWith('--')).map(flagName));
  return HEAP_START_FLAGS.filter((flag) => !given.has(flagName(flag)));
}

/**
 * Run this same command again with the start flags it lacks, in this same process (execve: the same pid,
 * the same standard streams, so a supervisor sees nothing change). Returns when none is missing, or when
 * this system has no execve(2). Called before anything else runs: the first image's state is discarded.
 */
export function relaunchWithStartFlags(): void {
  const missing = missingStartFlags(process.execArgv, process.env.NODE_OPTIONS);
  // Without execve(2) (process.execve undefined) the gateway runs with V8's own sizing.
  if (missing.length === 0 || !process.execve) return;
  process.execve(
    process.execPath,
    [process.execPath, ...missing, ...process.execArgv, ...process.argv.slice(1)],
    process.env,
  );
}

/**
 * V8 settings the gateway runs with, applied before its modules load (bin/gateway.js; the benches that
 * run it in their own process call this too). Buffers' memory, outside V8's heap, is counted within the
 * heap's own growing limit, rather than starting a full collection every time it grows by a fixed
 * amount: streaming a study allocates several times its size in short-lived Buffers, and each such
 * collection marks the whole heap, the R4 definitions included (docs/decisions/0054).
 */
export function applyHeapSettings(): void {
  setFlagsFromString('--external-memory-accounted-in-global-limit');
}

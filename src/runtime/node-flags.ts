/**
 * V8 flags every gateway process starts with. They have to be on the command
 * line: set at run time (v8.setFlagsFromString) this one did not take effect
 * in the intake process. So they are written out in package.json (start,
 * gateway), the Dockerfile's ENTRYPOINT and the test helpers, and
 * test/integration/node-flags.int.test.ts keeps those in step. A gateway
 * started some other way (e.g. bin/gateway.js directly) logs a warning.
 *
 * --external-memory-accounted-in-global-limit: without it V8 starts a full
 * mark-compact after every 64 MiB of Buffer memory allocated, however little
 * of it is still alive: about 100 per GiB of imaging streamed through a
 * gateway (--trace-gc). With it, 2 to 4. Gateway A then needs 5.5 instead of
 * 7.8 CPU-seconds per GiB (BENCHMARKS.md, Imaging).
 */
export const GATEWAY_NODE_FLAGS: readonly string[] = ['--external-memory-accounted-in-global-limit'];

/** The flags this process lacks (for a warning at start-up). */
export const missingNodeFlags = (execArgv: readonly string[] = process.execArgv): string[] => GATEWAY_NODE_FLAGS.filter((f) => !execArgv.includes(f));

#!/usr/bin/env node
// Runs the TypeScript sources directly (Node >= 26 strips types natively).
const [major] = process.versions.node.split('.').map(Number);
if (major < 26) {
  process.stderr.write(
    `gateway needs Node.js 26 or newer (this is ${process.version}).\n` +
      'Run it through npm so the pinned runtime is used: npm start, or npx gateway <command>.\n',
  );
  process.exit(1);
}
// Count Buffers' memory (outside V8's heap) within the heap's own growing limit, rather than starting a
// full collection every time it grows by a fixed amount: streaming a study allocates several times its
// size in short-lived Buffers, and each such collection marks the whole heap again.
(await import('node:v8')).setFlagsFromString('--external-memory-accounted-in-global-limit');
await import('./cli.ts');

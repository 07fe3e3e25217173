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
// Before the gateway's modules load: V8's heap settings (src/runtime/v8-heap.ts). The commands that keep
// running relaunch, in this same process, with the settings V8 reads only at its start.
const heap = await import('../src/runtime/v8-heap.ts');
if (['start', 'serve', 'worker'].includes(process.argv[2] ?? '')) heap.relaunchWithStartFlags();
heap.applyHeapSettings();
await import('./cli.ts');

import { join, resolve } from 'node:path';
import { loadConfig } from '../config.ts';
import { runDemo } from '../demo/orchestrate.ts';
import { parse, type Command } from './command.ts';

/** Resolves on the first SIGINT or SIGTERM; the demo then stops its gateways itself. */
function stopRequested(): Promise<void> {
  return new Promise((resolve) => {
    const handler = () => {
      process.removeListener('SIGINT', handler);
      process.removeListener('SIGTERM', handler);
      resolve();
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
  });
}

/** `gateway demo`, given the path of the `gateway` entry point (it runs one gateway per organisation). */
export function demoCommand(entry: string, content: string): Command {
  return {
    name: 'demo',
    summary: 'two hospitals on this machine: start two gateways and exchange records between them',
    usage: `gateway demo [--keep] [--dir DIR]

Starts two gateways (hospital A and hospital B) on this machine, each with its
own embedded PostgreSQL and SoftHSM token under DIR (default DATA_DIR/demo,
that is ./var/demo), makes them partners, registers an EHR client on each
(its key kept in DIR), sends three patient bundles and a CT image from A to B,
pulls them at B, and shows the signed receipts and the audit checkpoints.
Every step is printed as the curl or gateway command that does it.

Without --keep both gateways are stopped at the end; with --keep they keep
running for exploring until Ctrl-C. Ctrl-C stops both gracefully at any time.
Running it again reuses DIR (keys, databases); remove DIR to start afresh.`,
    run: async (args) => {
      const { values } = parse(args, { keep: { type: 'boolean' }, dir: { type: 'string' } });
      const dir = values.dir ?? join(loadConfig().dataDir, 'demo');
      const stopped = stopRequested();
      return runDemo({ entry, dir: resolve(dir), content, keep: values.keep ?? false, stopped });
    },
  };
}

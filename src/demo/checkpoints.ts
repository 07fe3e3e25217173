import type { Organisation } from './setup.ts';
import type { StepsPrinter } from './steps-printer.ts';

/**
 * Ask each gateway to sign an audit checkpoint now (the worker does it every minute anyway) and show
 * it: a signed note naming the log, its size and its Merkle root, verifiable offline.
 */
export async function showCheckpoints(orgs: Organisation[], printer: StepsPrinter): Promise<void> {
  for (const o of orgs) {
    const cp = await o.admin.json<{ note: string; issuedAt: string }>('POST', '/audit/checkpoint');
    const [origin, size, root] = cp.note.split('\n');
    printer.info(
      `gateway ${o.gateway.label}: checkpoint of ${size ?? '?'} audit entries, issued ${cp.issuedAt}\n` +
        `  log ${origin ?? '?'}, Merkle root ${root ?? '?'}, signed by its audit key in the HSM`,
    );
  }
}

import { publicUrls } from '../runtime/public-urls.ts';
import { envPrefix, type Organisation } from './setup.ts';
import { shownPath, type StepsPrinter } from './steps-printer.ts';

/** Where to look next: each gateway's pages, logs and admin commands, and the documents that explain them. */
export function whereToLook(
  a: Organisation,
  b: Organisation,
  o: { received: string; keep: boolean },
  printer: StepsPrinter,
): void {
  if (!o.keep)
    printer.info('the addresses answer while the gateways run: `npx gateway demo --keep` leaves them running');
  for (const org of [a, b]) {
    const urls = publicUrls(org.gateway.url);
    printer.info(
      [
        `gateway ${org.gateway.label} (${org.gateway.org}): ${urls.api}`,
        `  API reference  ${urls.docs}`,
        `  FHIR base      ${urls.fhir}`,
        `  audit page     ${urls.audit}  (an account: ${envPrefix(org.gateway)} npx gateway audit users add --name you)`,
        `  log            ${shownPath(org.gateway.logFile)}`,
        `  admin commands ${envPrefix(org.gateway)} npx gateway keys list  (also partners list, clients list, deliveries list)`,
      ].join('\n'),
    );
  }
  printer.info(
    [
      `what B's EHR pulled: ${shownPath(o.received)}`,
      `evidence pack, verified offline: ${envPrefix(a.gateway)} npx gateway audit export --out a-audit.json && npx gateway audit verify a-audit.json`,
      'read on: docs/PROTOCOL.md (the exchange between gateways), docs/AUDIT.md (the audit log and its checkpoints),',
      '         docs/SECURITY.md (keys, TLS and mutual TLS, which production needs: the demo is plain HTTP on loopback)',
    ].join('\n'),
  );
}

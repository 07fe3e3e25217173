import { randomUUID } from 'node:crypto';
import type { DemoFile } from './content.ts';
import type { Organisation } from './setup.ts';
import type { StepsPrinter } from './steps-printer.ts';

/** One submission from A: its exchange, where its state is, and (once delivered) B's signed receipt. */
export interface Sent {
  file: DemoFile;
  exchange: string;
  /** "/exchanges/{id}" or "/imaging/{id}" (the Content-Location of the 202). */
  status: string;
  receipt?: string;
}

const DELIVERY_TIMEOUT_MS = 120_000;

/** Send one file from `from` to `to`: a bundle to POST /exchanges, a DICOM file to POST /imaging. */
export async function send(from: Organisation, to: Organisation, file: DemoFile): Promise<Sent> {
  const path = `${file.kind === 'bundle' ? '/exchanges' : '/imaging'}?recipient=${encodeURIComponent(to.gateway.org)}`;
  const res = await from.ehr.request('POST', path, {
    headers: { 'Idempotency-Key': randomUUID() },
    file: { path: file.path, contentType: file.contentType },
  });
  const text = await res.text();
  if (res.status !== 202)
    throw new Error(`POST ${path} for ${file.name} answered ${res.status}: ${text.slice(0, 500)}`);
  const status = res.headers.get('content-location') ?? res.headers.get('location') ?? '';
  const exchange = status.split('/').pop() ?? '';
  from.ehr.printer.info(`202 Accepted, ${file.name}: ${status}`);
  return { file, exchange, status };
}

interface Recipient {
  partner: string;
  state: string;
  receipt: string | null;
  last_error: string | null;
}

/** Poll each exchange's status until its one recipient is delivered, keeping the receipt it shows. */
export async function awaitReceipts(from: Organisation, sent: Sent[], printer: StepsPrinter): Promise<void> {
  const first = sent[0];
  if (first) await from.ehr.json('GET', first.status); // printed once: the others are the same call
  const deadline = Date.now() + DELIVERY_TIMEOUT_MS;
  for (const s of sent) {
    for (;;) {
      const view = await from.ehr.json<{ recipients: Recipient[] }>('GET', s.status, {}, [200], true);
      const r = view.recipients[0];
      if (r?.state === 'delivered' && r.receipt) {
        s.receipt = r.receipt;
        break;
      }
      if (r?.state === 'failed') throw new Error(`delivery of ${s.file.name} failed: ${r.last_error ?? ''}`);
      if (Date.now() > deadline)
        throw new Error(`${s.file.name} not delivered within ${DELIVERY_TIMEOUT_MS / 1000} s (${r?.last_error ?? ''})`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    printer.info(`${s.file.name}: delivered; receipt ${describeReceipt(s.receipt)}`);
  }
}

/** A receipt's header and claims as a person reads them (the signature was verified by gateway A). */
export function describeReceipt(receipt: string): string {
  // A protocol v2 receipt is dual-signed (JSON serialization): its headers are those of its two signatures.
  const dual = receipt.startsWith('{')
    ? (JSON.parse(receipt) as { payload: string; signatures: Array<{ protected: string }> })
    : undefined;
  const [header, payload] = receipt.split('.');
  const decode = (part: string | undefined) =>
    JSON.parse(Buffer.from(part ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  const headers = dual ? dual.signatures.map((s) => decode(s.protected)) : [decode(header)];
  const c = decode(dual ? dual.payload : payload);
  const signedBy = headers.map((h) => `${String(h.alg)}, kid ${String(h.kid)}`).join('; ');
  return (
    `${String(c.jti)} (${String(headers[0]?.typ)}, ${signedBy})\n` +
    `  iss ${String(c.iss)} -> aud ${String(c.aud)}, status ${String(c.status)}, ` +
    `delivery ${String(c.delivery)}, digest ${String(c.digest)}`
  );
}

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Hex } from './content.ts';
import type { Sent } from './send.ts';
import type { Organisation } from './setup.ts';
import type { StepsPrinter } from './steps-printer.ts';

interface InboxMessage {
  id: string;
  sender: string;
  exchange: string;
  state: string;
}

export interface Pulled {
  name: string;
  sentSha256: string;
  receivedSha256: string;
  savedAs: string;
}

/**
 * B's EHR pulls what A sent: it lists its inbox, reads each message (opened and verified on read; the
 * content of imaging), writes it where an EHR would import it, and acknowledges it.
 */
export async function pullAll(
  to: Organisation,
  sent: Sent[],
  folder: string,
  printer: StepsPrinter,
): Promise<Pulled[]> {
  const listed = await to.ehr.json<{ messages: InboxMessage[] }>('GET', '/inbox/messages?state=received');
  const byExchange = new Map(listed.messages.map((m) => [m.exchange, m]));
  printer.info(`${listed.messages.length} message(s) waiting`);
  mkdirSync(folder, { recursive: true });
  const pulled: Pulled[] = [];
  const shown = new Set<string>();
  for (const s of sent) {
    const message = byExchange.get(s.exchange);
    if (!message) throw new Error(`B's inbox has no message for exchange ${s.exchange} (${s.file.name})`);
    const savedAs = join(folder, s.file.name);
    const path = `/inbox/messages/${message.id}${s.file.kind === 'dicom' ? '/content' : ''}`;
    // The first call of each kind is printed; the others are the same with another id.
    const quiet = shown.has(s.file.kind);
    shown.add(s.file.kind);
    const res = await to.ehr.request('GET', path, { output: savedAs }, quiet);
    if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${(await res.text()).slice(0, 500)}`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    writeFileSync(savedAs, bytes);
    const receivedSha256 = sha256Hex(bytes);
    await to.ehr.json('POST', `/inbox/messages/${message.id}/$ack`, {}, [200], quiet);
    pulled.push({ name: s.file.name, sentSha256: s.file.sha256, receivedSha256, savedAs });
    const same = receivedSha256 === s.file.sha256 ? 'identical to what A sent' : 'DIFFERENT from what A sent';
    printer.info(`${s.file.name} from ${message.sender}: sha256 ${receivedSha256}, ${same}; acknowledged`);
  }
  return pulled;
}

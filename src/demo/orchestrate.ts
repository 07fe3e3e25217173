import { join } from 'node:path';
import { showCheckpoints } from './checkpoints.ts';
import { demoContent } from './content.ts';
import { spawnGateway, type DemoGateway, type GatewaySpec } from './gateway-process.ts';
import { whereToLook } from './guide.ts';
import { demoPorts } from './ports.ts';
import { pullAll, type Pulled } from './pull.ts';
import { awaitReceipts, send, type Sent } from './send.ts';
import { envPrefix, organisation, setUp } from './setup.ts';
import { shownPath, StepsPrinter } from './steps-printer.ts';

export interface DemoOptions {
  /** bin/gateway.js: the demo runs the real `gateway` command for each organisation. */
  entry: string;
  /** The demo folder: a/ and b/ are the two gateways' DATA_DIR. */
  dir: string;
  /** The folder with records/ and imaging/ to send. */
  content: string;
  /** Leave both gateways running until `stopped` resolves. */
  keep: boolean;
  /** Resolves when the user asks to stop (SIGINT/SIGTERM). */
  stopped: Promise<void>;
  printer?: StepsPrinter;
}

export const ORG_A = 'demo-hospital-a';
export const ORG_B = 'demo-hospital-b';

class Interrupted extends Error {}

/**
 * Two hospitals on this machine: start a gateway for each, set them up as partners with an EHR
 * client each, send patient records and a CT image from A to B, pull them at B, and show the
 * receipts and audit checkpoints. Both gateways are stopped gracefully at the end, or on a signal.
 * Returns the exit code: 0 when the exchange went through or the user stopped it.
 */
export async function runDemo(o: DemoOptions): Promise<number> {
  const printer = o.printer ?? new StepsPrinter();
  const untilStopped = <T>(p: Promise<T>) =>
    Promise.race([
      p,
      o.stopped.then(() => {
        throw new Interrupted();
      }),
    ]);
  const gateways: DemoGateway[] = [];
  try {
    const content = demoContent(o.content);
    const ports = await demoPorts();
    const specs: GatewaySpec[] = [
      { label: 'A', org: ORG_A, dataDir: join(o.dir, 'a'), ports: ports.a },
      { label: 'B', org: ORG_B, dataDir: join(o.dir, 'b'), ports: ports.b },
    ];
    printer.line(`gateway demo: two hospitals exchanging records on this machine, in ${shownPath(o.dir)}`);
    printer.step('Start a gateway for each hospital (embedded PostgreSQL and a SoftHSM token in its DATA_DIR)');
    for (const s of specs) {
      const gw = spawnGateway(o.entry, s);
      gateways.push(gw);
      printer.command(`${envPrefix(gw)} PORT=${s.ports.http} ORG_ID=${s.org} npx gateway start`);
    }
    await untilStopped(Promise.all(gateways.map((g) => g.ready())));
    const [gwA, gwB] = gateways as [DemoGateway, DemoGateway];
    printer.command(`A=${gwA.url} B=${gwB.url}`);
    printer.info('both ready (GET /ready answers 200)');

    const a = organisation(gwA, printer);
    const b = organisation(gwB, printer);
    await untilStopped(setUp(o.entry, a, b, printer));

    printer.step(`EHR A sends ${content.bundles.length} patient records to hospital B (POST /exchanges)`);
    const sent: Sent[] = [];
    for (const f of content.bundles) sent.push(await untilStopped(send(a, b, f)));
    printer.step('EHR A sends a CT image to hospital B (POST /imaging, application/dicom)');
    for (const f of content.images) sent.push(await untilStopped(send(a, b, f)));

    printer.step(
      "Gateway B's signed receipts, verified by A, as A's EHR sees them (GET /exchanges/{id}, GET /imaging/{id})",
    );
    await untilStopped(awaitReceipts(a, sent, printer));

    printer.step('EHR B pulls them from its inbox, checks them, acknowledges them');
    const received = join(o.dir, 'b', 'ehr-received');
    const pulled: Pulled[] = await untilStopped(pullAll(b, sent, received, printer));
    const different = pulled.filter((p) => p.receivedSha256 !== p.sentSha256);
    if (different.length)
      throw new Error(`B received other bytes than A sent: ${different.map((p) => p.name).join(', ')}`);

    printer.step('Audit checkpoints (POST /audit/checkpoint): each log signed by its own HSM key');
    await untilStopped(showCheckpoints([a, b], printer));

    printer.step('Where to look');
    whereToLook(a, b, { received, keep: o.keep }, printer);
    printer.line();
    printer.line(
      `done: ${pulled.length} of ${sent.length} items arrived at B byte for byte, each with a signed receipt`,
    );
    if (o.keep) {
      printer.line('both gateways keep running (--keep); press Ctrl-C to stop them');
      await o.stopped;
    }
    return 0;
  } catch (err) {
    if (err instanceof Interrupted) return 0;
    process.stderr.write(`gateway demo: ${(err as Error).message}\n`);
    return 1;
  } finally {
    printer.line('stopping both gateways …');
    const codes = await Promise.all(gateways.map((g) => g.stop()));
    printer.line(codes.every((c) => c === 0) ? 'stopped' : `stopped (exit codes ${codes.join(', ')})`);
  }
}

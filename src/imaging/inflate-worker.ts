import { parentPort } from 'node:worker_threads';
import { GatewayError } from '../errors.ts';
import { inspectDeflated, type DeflatedLimits } from './deflated.ts';

/**
 * Entry point of one inflation worker (inflate-pool.ts): one deflated DICOM
 * file per message, answered with its identity or with the refusal's code,
 * message and expression (a GatewayError does not survive postMessage).
 */
export interface InflateTask {
  file: Uint8Array;
  limits: DeflatedLimits;
}

export type InflateAnswer =
  | { ok: true; identity: ReturnType<typeof inspectDeflated> }
  | { ok: false; refusal: { code: GatewayError['code']; message: string; expression: string[] | undefined } }
  | { ok: false; fault: string };

const port = parentPort;
if (!port) throw new Error('inflate-worker.ts runs as a worker thread (inflate-pool.ts)');
port.on('message', (task: InflateTask) => {
  let answer: InflateAnswer;
  try {
    const file = Buffer.from(task.file.buffer, task.file.byteOffset, task.file.byteLength);
    answer = { ok: true, identity: inspectDeflated(file, task.limits) };
  } catch (err) {
    answer =
      err instanceof GatewayError
        ? { ok: false, refusal: { code: err.code, message: err.message, expression: err.expression } }
        : { ok: false, fault: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(answer);
});

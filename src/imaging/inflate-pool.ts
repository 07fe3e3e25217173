import { Worker } from 'node:worker_threads';
import { GatewayError } from '../errors.ts';
import type { DicomIdentity } from './dicom-attributes.ts';
import type { DeflatedLimits } from './deflated.ts';
import type { InflateAnswer } from './inflate-worker.ts';

/** Files that may wait for a worker, per worker; past that the gateway is busy (503). */
const WAITING_PER_WORKER = 4;
const RETRY_AFTER_S = 5;

interface Job {
  file: Buffer;
  limits: DeflatedLimits;
  resolve: (identity: DicomIdentity) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
}

/**
 * A small pool of worker threads that inflate and inspect deflated DICOM
 * files (deflated.ts), so that a file which inflates to DICOM_INFLATE_MAX
 * never stalls the event loop. At most `size` files are inflated at once;
 * a few more wait in order; beyond that a file is refused with 503 and
 * Retry-After. Workers start on first use and do not keep the process alive
 * while idle.
 */
export class InflatePool {
  readonly #size: number;
  readonly #slots: Slot[] = [];
  readonly #waiting: Job[] = [];

  constructor(size: number) {
    this.#size = size;
  }

  inspect(file: Buffer, limits: DeflatedLimits): Promise<DicomIdentity> {
    if (this.#waiting.length >= this.#size * WAITING_PER_WORKER)
      return Promise.reject(
        new GatewayError('UNAVAILABLE', 'the gateway is busy inflating deflated DICOM files; retry later', {
          retryAfter: RETRY_AFTER_S,
        }),
      );
    return new Promise((resolve, reject) => {
      this.#waiting.push({ file, limits, resolve, reject });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    while (this.#waiting.length) {
      const slot = this.#slots.find((s) => !s.job) ?? (this.#slots.length < this.#size ? this.#start() : undefined);
      if (!slot) return;
      const job = this.#waiting.shift() as Job;
      slot.job = job;
      slot.worker.ref();
      // A copy of exactly the file's bytes, moved to the worker (cloning a view would copy its whole backing store).
      const file = new Uint8Array(job.file);
      slot.worker.postMessage({ file, limits: job.limits }, [file.buffer]);
    }
  }

  #start(): Slot {
    const worker = new Worker(new URL('./inflate-worker.ts', import.meta.url));
    const slot: Slot = { worker, job: undefined };
    worker.unref();
    worker.on('message', (answer: InflateAnswer) => {
      const job = slot.job;
      slot.job = undefined;
      worker.unref();
      if (job) settle(job, answer);
      this.#dispatch();
    });
    // A worker that dies (out of memory on a hostile file) takes only its own file with it.
    worker.on('error', (err) => this.#lost(slot, err));
    worker.on('exit', () => this.#lost(slot, undefined));
    this.#slots.push(slot);
    return slot;
  }

  #lost(slot: Slot, err: unknown): void {
    const at = this.#slots.indexOf(slot);
    if (at < 0) return;
    this.#slots.splice(at, 1);
    const job = slot.job;
    slot.job = undefined;
    job?.reject(
      new GatewayError('PAYLOAD_TOO_LARGE', 'the deflated data set is too costly to inflate and inspect', {
        cause: err,
      }),
    );
    void slot.worker.terminate();
    this.#dispatch();
  }
}

function settle(job: Job, answer: InflateAnswer): void {
  if (answer.ok) return job.resolve(answer.identity);
  if ('refusal' in answer) {
    const r = answer.refusal;
    return job.reject(new GatewayError(r.code, r.message, { expression: r.expression }));
  }
  job.reject(new Error(`DICOM inflation worker: ${answer.fault}`));
}

const pools = new Map<number, InflatePool>();

/** The process's pool of `size` workers (DICOM_INFLATE_CONCURRENCY), shared by intake and receive. */
export function inflatePool(size: number): InflatePool {
  let pool = pools.get(size);
  if (!pool) pools.set(size, (pool = new InflatePool(size)));
  return pool;
}

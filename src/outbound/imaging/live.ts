import type { Partner } from '../../directory/directory.ts';
import { required } from '../../required.ts';
import type { DeliveryContext } from '../deliver.ts';
import type { ProtocolVersion } from '../../protocol/v2-acceptance.ts';
import { transmit } from '../transmit.ts';
import {
  deliveryBoundary,
  deliveryHead,
  deliveryTail,
  imagingTransmission,
  type AttemptResult,
  type Expected,
} from './deliver.ts';

/**
 * How much sealed content may wait for a slow recipient before the live
 * transmission is dropped: 4 MiB each, but never more than 16 MiB for all the
 * recipients of one submission together (at least 256 KiB each), so that a
 * study sent to many partners keeps the intake's memory bounded.
 */
export function liveQueueBytes(recipients: number): number {
  const MIB = 1024 * 1024;
  return Math.max(256 * 1024, Math.min(4 * MIB, Math.floor((16 * MIB) / Math.max(1, recipients))));
}
const STALL_MS = 2_000;

/**
 * Cut-through delivery: while the intake is still sealing the content to
 * its file, the same JWE bytes already stream to the recipient (the
 * announcement went first, the manifest follows once it is signed and the
 * intake has committed). The intake never waits on the recipient for long:
 * if the recipient stalls, or anything fails, the live transmission is
 * dropped and the delivery job sends the stored file instead. Memory stays
 * bounded by liveQueueBytes().
 */
export class LiveTransmission {
  readonly result: Promise<AttemptResult>;
  readonly started = new Date();
  readonly deliveryId: string;
  readonly #abort = new AbortController();
  readonly #queue: Buffer[] = [];
  #queued = 0;
  #tail: Buffer | undefined;
  #expected: Expected | undefined;
  #wake: (() => void) | undefined;
  #space: (() => void) | undefined;
  #dropped = false;

  readonly #queueBytes: number;

  constructor(
    ctx: DeliveryContext,
    partner: Partner,
    deliveryId: string,
    announcement: string,
    queueBytes: number,
    protocol: ProtocolVersion,
  ) {
    this.#queueBytes = queueBytes;
    this.deliveryId = deliveryId;
    const boundary = deliveryBoundary();
    this.#boundary = boundary;
    this.result = transmit(
      ctx,
      imagingTransmission(
        deliveryId,
        partner,
        () => this.#body(deliveryHead(boundary, announcement)),
        boundary,
        this.#abort.signal,
        () => required(this.#expected, 'the digests finish() sets before the manifest is sent'),
        protocol,
      ),
    );
    // The first failure ends it; the intake only notices that pushes become no-ops.
    void this.result.then((r) => {
      if (r.cls !== 'delivered') this.drop();
    });
  }

  readonly #boundary: string;

  get dropped(): boolean {
    return this.#dropped;
  }

  async *#body(head: Buffer): AsyncGenerator<Buffer> {
    yield head;
    for (;;) {
      const next = this.#queue.shift();
      if (next) {
        this.#queued -= next.length;
        this.#space?.();
        yield next;
        continue;
      }
      if (this.#tail) {
        yield this.#tail;
        return;
      }
      if (this.#dropped) throw new Error('live transmission dropped');
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
  }

  /** Queue sealed bytes; waits (up to STALL_MS) while the recipient is behind, then gives up on it. */
  async push(jwe: Buffer): Promise<void> {
    if (this.#dropped || !jwe.length) return;
    this.#queue.push(jwe);
    this.#queued += jwe.length;
    this.#wake?.();
    while (this.#queued > this.#queueBytes && !this.#dropped) {
      const drained = new Promise<boolean>((r) => (this.#space = () => r(true)));
      const stalled = new Promise<boolean>((r) => setTimeout(() => r(false), STALL_MS).unref());
      if (!(await Promise.race([drained, stalled]))) this.drop();
    }
  }

  /** The manifest is signed and the intake committed: send the last part. */
  finish(manifest: string, expected: Expected): void {
    if (this.#dropped) return;
    this.#expected = expected;
    this.#tail = deliveryTail(this.#boundary, manifest);
    this.#wake?.();
  }

  drop(): void {
    if (this.#dropped) return;
    this.#dropped = true;
    this.#queue.length = 0;
    this.#queued = 0;
    this.#abort.abort();
    this.#wake?.();
    this.#space?.();
  }
}

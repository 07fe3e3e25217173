/**
 * Group commit: concurrent submissions are gathered and written by one
 * `run` call (one transaction), and each submitter is answered only when
 * that call has finished, i.e. after its commit. No timer: a batch is
 * whatever arrived while the previous batch was being written, so a lone
 * request pays no added latency and a busy gateway writes in large batches.
 */
export interface GroupCommitOptions<I> {
  /** Most items per run. */
  maxItems: number;
  /** Most summed weight (e.g. bytes) per run; one heavier item still runs alone. */
  maxWeight: number;
  weight: (item: I) => number;
  /** Runs allowed at once. */
  maxInFlight: number;
}

interface Pending<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (err: unknown) => void;
}

export class GroupCommit<I, O> {
  readonly #run: (items: I[]) => Promise<Array<O | Error>>;
  readonly #opts: GroupCommitOptions<I>;
  #queue: Array<Pending<I, O>> = [];
  #inFlight = 0;
  #idle: Array<() => void> = [];

  /** `run` writes a batch and returns one result per item, in order: a value, or an Error for that item alone. */
  constructor(run: (items: I[]) => Promise<Array<O | Error>>, opts: GroupCommitOptions<I>) {
    this.#run = run;
    this.#opts = opts;
  }

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      // setImmediate: let the requests already parsed in this turn join the batch.
      if (this.#inFlight < this.#opts.maxInFlight) setImmediate(() => this.#flush());
    });
  }

  /** Resolves once nothing is queued or running (graceful shutdown). */
  drained(): Promise<void> {
    if (this.#inFlight === 0 && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #take(): Array<Pending<I, O>> {
    let weight = 0;
    let n = 0;
    for (const pending of this.#queue) {
      if (n >= this.#opts.maxItems) break;
      const w = this.#opts.weight(pending.item);
      if (n > 0 && weight + w > this.#opts.maxWeight) break;
      weight += w;
      n++;
    }
    return this.#queue.splice(0, n);
  }

  async #flush(): Promise<void> {
    if (this.#inFlight >= this.#opts.maxInFlight || this.#queue.length === 0) return;
    const batch = this.#take();
    this.#inFlight++;
    try {
      await this.#settle(batch);
    } finally {
      this.#inFlight--;
      if (this.#queue.length) void this.#flush();
      else if (this.#inFlight === 0) this.#idle.splice(0).forEach((f) => f());
    }
  }

  async #settle(batch: Array<Pending<I, O>>): Promise<void> {
    let results: Array<O | Error>;
    try {
      results = await this.#run(batch.map((p) => p.item));
    } catch (err) {
      const only = batch.length === 1 ? batch[0] : undefined;
      if (only) {
        only.reject(err);
        return;
      }
      // One bad item must not fail its neighbours: write each alone.
      await Promise.all(batch.map((p) => this.#settle([p])));
      return;
    }
    batch.forEach((p, i) => {
      const r = results[i];
      if (r instanceof Error) p.reject(r);
      else p.resolve(r as O);
    });
  }
}

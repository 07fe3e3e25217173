/**
 * A bounded bridge from a push source (a PlaintextSink's write) to a pull
 * consumer (an async iterable such as multipartParts): push() resolves once
 * the queue has room again, so at most `capacity` chunks wait (chunks are
 * passed by reference, never copied). close() is the consumer giving up
 * (done or failed): the queue is dropped and later pushes return at once.
 */
export class Handoff implements AsyncIterable<Buffer> {
  readonly #capacity: number;
  #queue: Buffer[] = [];
  #ended = false;
  #closed = false;
  #wakeConsumer: (() => void) | undefined;
  #wakeProducer: (() => void) | undefined;

  constructor(capacity = 2) {
    this.#capacity = capacity;
  }

  push(chunk: Buffer): Promise<void> {
    if (this.#closed || this.#ended) return Promise.resolve();
    this.#queue.push(chunk);
    this.#wake('consumer');
    if (this.#queue.length < this.#capacity) return Promise.resolve();
    return new Promise((resolve) => (this.#wakeProducer = resolve));
  }

  /** No more chunks: the consumer sees the end once the queue is empty. */
  end(): void {
    this.#ended = true;
    this.#wake('consumer');
  }

  /** The consumer stopped: drop what waits and never block the producer again. */
  close(): void {
    this.#closed = true;
    this.#queue = [];
    this.#wake('producer');
    this.#wake('consumer');
  }

  #wake(who: 'consumer' | 'producer'): void {
    const w = who === 'consumer' ? this.#wakeConsumer : this.#wakeProducer;
    if (who === 'consumer') this.#wakeConsumer = undefined;
    else this.#wakeProducer = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (;;) {
      const next = this.#queue.shift();
      if (next) {
        if (this.#queue.length < this.#capacity) this.#wake('producer');
        yield next;
        continue;
      }
      if (this.#ended || this.#closed) return;
      await new Promise<void>((resolve) => (this.#wakeConsumer = resolve));
    }
  }
}

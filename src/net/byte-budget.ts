/**
 * A count of bytes held across requests, against a fixed budget: a
 * reservation either fits whole or is refused, and every reservation is
 * given back exactly once (Reservation.release is idempotent).
 */
export class ByteBudget {
  readonly limit: number;
  #held = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  get held(): number {
    return this.#held;
  }

  /** An empty reservation, to grow as bytes arrive. */
  open(): Reservation {
    return new Reservation(this);
  }

  /** @internal Reservation's side of the count. */
  take(bytes: number): boolean {
    if (this.#held + bytes > this.limit) return false;
    this.#held += bytes;
    return true;
  }

  /** @internal */
  give(bytes: number): void {
    this.#held -= bytes;
  }
}

export class Reservation {
  readonly #budget: ByteBudget;
  #bytes = 0;
  #released = false;

  constructor(budget: ByteBudget) {
    this.#budget = budget;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Hold `bytes` more; false (and nothing held) if the budget has no room for them. */
  grow(bytes: number): boolean {
    if (this.#released || !this.#budget.take(bytes)) return false;
    this.#bytes += bytes;
    return true;
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#budget.give(this.#bytes);
    this.#bytes = 0;
  }
}

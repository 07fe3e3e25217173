/**
 * The last answer of `load` for `ttlMs`, and one load at a time: a storm of
 * scrapes costs the database one round of queries per interval.
 */
export function cached<T>(load: () => Promise<T>, ttlMs: number, now: () => number = Date.now): () => Promise<T> {
  let value: { at: number; result: T } | undefined;
  let inFlight: Promise<T> | undefined;
  return () => {
    if (value && now() - value.at < ttlMs) return Promise.resolve(value.result);
    inFlight ??= load()
      .then((result) => {
        value = { at: now(), result };
        return result;
      })
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  };
}

/**
 * A value an internal rule guarantees: an aggregate query returns one row, a
 * regex group that took part in the match is set. `rule` states that rule; if
 * it is ever broken this throws instead of letting `undefined` flow on.
 */
export function required<T>(value: T | undefined, rule: string): T {
  if (value === undefined) throw new Error(`internal error: expected ${rule}`);
  return value;
}

/** An object's defined members in canonical order (keys sorted by UTF-16 code units), each as `"key":value`. */
function members(value: Record<string, unknown>): Array<[key: string, member: string]> {
  return Object.entries(value)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => [k, `${JSON.stringify(k)}:${canonicalJson(v)}`]);
}

/** Canonical JSON: object keys sorted, no insignificant whitespace (RFC 8785 for the values we log). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  return `{${members(value as Record<string, unknown>)
    .map(([, m]) => m)
    .join(',')}}`;
}

/**
 * canonicalJson of `value` with one more top-level key, split around that
 * key's value: before + canonicalJson(v) + after === canonicalJson({ ...value, [key]: v }).
 * Lets the database fill in a value it alone knows (the audit index) in
 * the same statement that writes the entry.
 */
export function canonicalJsonAround(value: Record<string, unknown>, key: string): [before: string, after: string] {
  const others = members(value).filter(([k]) => k !== key);
  const lower = others.filter(([k]) => k < key).map(([, m]) => m);
  const higher = others.filter(([k]) => k > key).map(([, m]) => m);
  return [`{${[...lower, ''].join(',')}${JSON.stringify(key)}:`, `${higher.map((m) => `,${m}`).join('')}}`];
}

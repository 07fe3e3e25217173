/** Freshness lifetime (ms) from a Cache-Control header, clamped to [minMs, maxMs]; defaultMs if none given. */
export function freshnessMs(header: string | null, defaultMs: number, minMs: number, maxMs: number): number {
  if (!header) return defaultMs;
  const directives = header
    .toLowerCase()
    .split(',')
    .map((d) => d.trim());
  if (directives.some((d) => d === 'no-store' || d === 'no-cache')) return minMs;
  const maxAge = directives.map((d) => /^(?:s-)?max-age=(\d+)$/.exec(d)).find((m) => m);
  if (!maxAge) return defaultMs;
  return Math.min(maxMs, Math.max(minMs, Number(maxAge[1]) * 1000));
}

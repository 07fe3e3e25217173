import { describe, expect, it } from 'vitest';
import { uuidv7 } from '../../src/ids.ts';

describe('uuidv7', () => {
  it('is an RFC 9562 version 7 UUID carrying the millisecond time', () => {
    const at = Date.UTC(2026, 10, 22, 5, 0, 0, 123);
    const id = uuidv7(at);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(at);
  });
  it('sorts by time (as text and as PostgreSQL uuid) and is unique within a millisecond', () => {
    const ids = Array.from({ length: 2000 }, (_, i) => uuidv7(1_700_000_000_000 + Math.floor(i / 100)));
    const byTime = ids.map((id, i) => [id, Math.floor(i / 100)] as const);
    const sorted = [...byTime].sort(([a], [b]) => (a < b ? -1 : 1));
    expect(sorted.map(([, t]) => t)).toEqual([...byTime].map(([, t]) => t).sort((a, b) => a - b));
    expect(new Set(ids).size).toBe(ids.length);
  });
});

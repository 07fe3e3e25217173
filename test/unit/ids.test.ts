import { describe, expect, it } from 'vitest';
import { isUuid, uuidv7 } from '../../src/ids.ts';

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

describe('isUuid', () => {
  it('accepts the canonical 8-4-4-4-12 hex form in either case, of any version', () => {
    expect(isUuid(uuidv7())).toBe(true);
    expect(isUuid('00000000-0000-0000-0000-000000000000')).toBe(true);
    expect(isUuid('6F9619FF-8B86-D011-B42D-00C04FC964FF')).toBe(true);
    expect(isUuid('6f9619ff-8b86-d011-b42d-00c04fc964ff')).toBe(true);
  });
  it('refuses everything a uuid column would choke on or read differently', () => {
    for (const bad of [
      '',
      '6f9619ff8b86d011b42d00c04fc964ff', // no hyphens
      '{6f9619ff-8b86-d011-b42d-00c04fc964ff}', // braces
      'urn:uuid:6f9619ff-8b86-d011-b42d-00c04fc964ff',
      '6f9619ff-8b86-d011-b42d-00c04fc964f', // one digit short
      '6f9619ff-8b86-d011-b42d-00c04fc964fff', // one digit long
      '6f9619ff-8b86-d011-b42d-00c04fc964fg', // not hex
      ' 6f9619ff-8b86-d011-b42d-00c04fc964ff',
      '6f9619ff-8b86-d011-b42d-00c04fc964ff\n', // $ must not match before a trailing newline
      '6f9619ff-8b86d011-b42d-00c04fc964ff-', // hyphen moved
    ]) {
      expect(isUuid(bad), JSON.stringify(bad)).toBe(false);
    }
    for (const notString of [undefined, null, 42, {}, ['6f9619ff-8b86-d011-b42d-00c04fc964ff']]) {
      expect(isUuid(notString)).toBe(false);
    }
  });
});

describe('isPlainIdentifier', async () => {
  const { isPlainIdentifier, MAX_IDENTIFIER_LENGTH } = await import('../../src/ids.ts');
  it('accepts ids, URLs and key ids', () => {
    for (const v of [
      'https://gw.hospital-a.example',
      'urn:oid:1.2.3',
      'MZsZWXdciHMVGhiCLuLdbKHhtkNKiu6QMQnU99lEkJQ',
      'Zoë',
    ])
      expect(isPlainIdentifier(v)).toBe(true);
  });
  it('refuses empty, overlong, non-string and control characters (NUL first of all)', () => {
    for (const v of [
      '',
      'a'.repeat(MAX_IDENTIFIER_LENGTH + 1),
      'a\u0000b',
      'tab\there',
      'line\nbreak',
      'del\u007f',
      7,
      null,
    ])
      expect(isPlainIdentifier(v)).toBe(false);
    expect(isPlainIdentifier('a'.repeat(MAX_IDENTIFIER_LENGTH))).toBe(true);
  });
});

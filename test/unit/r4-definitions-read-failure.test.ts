import { describe, expect, it, vi } from 'vitest';

// The definitions reader fails once, partway through the resources file (a read error, say): the rest of
// that file must never be taken as loaded.
vi.mock('../../src/fhir/bundle-file.ts', async (importActual) => {
  const actual = await importActual<typeof import('../../src/fhir/bundle-file.ts')>();
  let failed = false;
  return {
    ...actual,
    bundleResources: function* (path: string) {
      let n = 0;
      for (const r of actual.bundleResources(path)) {
        if (!failed && path.endsWith('profiles-resources.json') && ++n === 100) {
          failed = true;
          throw new Error('EIO: i/o error, read');
        }
        yield r;
      }
    },
  };
});

const { ensureR4Definitions, r4DefinitionsLoaded } = await import('../../src/fhir/r4-definitions.ts');

describe('R4 definitions: a file that fails partway through its read', () => {
  it('keeps failing, and never counts as loaded with part of the file missing', () => {
    expect(() => ensureR4Definitions()).toThrow(/EIO/);
    expect(() => ensureR4Definitions()).toThrow(/EIO/);
    expect(r4DefinitionsLoaded()).toBe(false);
  });
});

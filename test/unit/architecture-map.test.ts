import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');
const MAP = readFileSync(join(root, 'docs/architecture.md'), 'utf8');
const LAYERS = ['bin', 'hsm', 'plugins', 'src'];
/** Groups the map names by pattern rather than file by file: numbered SQL migrations and the page's static assets. */
const GROUPS: Array<{ row: string; covers: (path: string) => boolean }> = [
  { row: 'src/db/migrations/*.sql', covers: (p) => /^src\/db\/migrations\/[^/]+\.sql$/.test(p) },
  { row: 'src/audit/ui/*', covers: (p) => p.startsWith('src/audit/ui/') },
];
const MAX_FILES_PER_FOLDER = 15;
/** dependency-rules.test.ts puts a probe module into the tree for a moment; it is not part of the product. */
const PROBE = /zz-dependency-rule-probe-\d+\.ts$/;

function walk(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const path = posix.join(dir, e.name);
    return e.isDirectory() ? walk(path) : [path];
  });
}

const sourceFiles = LAYERS.flatMap(walk)
  .filter((p) => !PROBE.test(p))
  .sort();

/** The module map's rows as folder/file paths: a blank folder cell continues the folder above it. */
function mapEntries(doc: string): string[] {
  const section = /## Module map\n([\s\S]*?)\n## /.exec(doc)?.[1] ?? '';
  const entries: string[] = [];
  let folder = '';
  for (const line of section.split('\n')) {
    const cells = /^\|([^|]*)\|([^|]*)\|/.exec(line);
    if (!cells || /^\s*-+\s*$/.test(cells[1] ?? '') || (cells[1] ?? '').trim() === 'folder') continue;
    const folderCell = /`([^`]+)`/.exec(cells[1] ?? '')?.[1];
    if (folderCell) folder = folderCell.replace(/\/$/, '');
    // Only the cell's leading names count: a parenthesis after a pattern just lists examples.
    const names = (cells[2] ?? '').replace(/\(.*\)/, '');
    for (const m of names.matchAll(/`([^`]+)`/g)) entries.push(posix.join(folder, m[1] ?? ''));
  }
  return entries;
}

/** Source files the map does not name, file by file or through a group row. */
function unmapped(files: string[], doc: string): string[] {
  const named = new Set(mapEntries(doc));
  return files.filter((f) => !named.has(f) && !GROUPS.some((g) => g.covers(f) && named.has(g.row)));
}

/** Every file path the document names anywhere (map, flows, prose), patterns excepted. */
function pathsNamed(doc: string): string[] {
  const inText = [...doc.matchAll(/`((?:bin|hsm|plugins|src)\/[\w./-]+)`/g)].map((m) => m[1] ?? '');
  return [...new Set([...inText, ...mapEntries(doc)])].filter((p) => !p.includes('*'));
}

describe('docs/architecture.md is a map of the tree', () => {
  it('finds the source files and the map rows it checks', () => {
    expect(sourceFiles.length).toBeGreaterThan(100);
    expect(mapEntries(MAP).length).toBeGreaterThan(100);
  });

  it('names every source file under bin/, hsm/, plugins/ and src/', () => {
    expect(unmapped(sourceFiles, MAP)).toEqual([]);
  });

  it('names only paths that exist', () => {
    expect(pathsNamed(MAP).filter((p) => !existsSync(join(root, p)))).toEqual([]);
  });

  it('would report a file added without a map line', () => {
    const added = ['src/outbound/new-step.ts', 'src/db/migrations/999_x.sql'];
    expect(unmapped([...sourceFiles, ...added], MAP).filter((f) => added.includes(f))).toEqual([
      'src/outbound/new-step.ts',
    ]);
    const withoutGroup = MAP.replace('| `src/db/migrations/` | `*.sql` |', '| `src/db/migrations/` | |');
    expect(unmapped(sourceFiles, withoutGroup)).toContain('src/db/migrations/001_gateway_keys.sql');
  });

  it(`keeps every folder under src/ to at most ${MAX_FILES_PER_FOLDER} source files`, () => {
    const perFolder = new Map<string, number>();
    for (const f of sourceFiles.filter((p) => p.startsWith('src/') && /\.(ts|js)$/.test(p))) {
      const dir = posix.dirname(f);
      perFolder.set(dir, (perFolder.get(dir) ?? 0) + 1);
    }
    expect([...perFolder].filter(([, n]) => n > MAX_FILES_PER_FOLDER)).toEqual([]);
  });
});

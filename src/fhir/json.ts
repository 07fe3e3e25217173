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

/** Deepest nesting in a JSON text, found without parsing it (strings are skipped). */
export function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) max = depth;
    } else if (c === 0x7d || c === 0x5d) depth--;
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

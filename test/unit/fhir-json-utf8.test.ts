import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { decodeJsonBody } from '../../src/fhir/json.ts';

/** Ill-formed UTF-8 (Unicode 15, table 3-7; Markus Kuhn's decoder stress test), each inside a JSON string. */
const INVALID: Array<[string, number[]]> = [
  ['lone continuation byte', [0x80]],
  ['lone last continuation byte', [0xbf]],
  ['start byte without continuation', [0xc3]],
  ['truncated three-byte sequence', [0xe2, 0x82]],
  ['truncated four-byte sequence', [0xf0, 0x9f, 0x98]],
  ['overlong slash (two bytes)', [0xc0, 0xaf]],
  ['overlong slash (three bytes)', [0xe0, 0x80, 0xaf]],
  ['overlong NUL (two bytes)', [0xc0, 0x80]],
  ['UTF-16 high surrogate', [0xed, 0xa0, 0x80]],
  ['UTF-16 low surrogate', [0xed, 0xbf, 0xbf]],
  ['beyond U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
  ['byte 0xfe', [0xfe]],
  ['byte 0xff', [0xff]],
  ['five-byte form', [0xf8, 0x88, 0x80, 0x80, 0x80]],
];

const inString = (bytes: number[]) =>
  Buffer.concat([Buffer.from('{"resourceType":"Bundle","id":"'), Buffer.from(bytes), Buffer.from('"}')]);

describe('JSON bodies are UTF-8, exactly', () => {
  it.each(INVALID)('refuses %s with INVALID_JSON', (_name, bytes) => {
    let caught: unknown;
    try {
      decodeJsonBody(inString(bytes));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(GatewayError);
    expect((caught as GatewayError).code).toBe('INVALID_JSON');
  });

  it('keeps every valid character, so the bytes that were accepted are the bytes that are signed', () => {
    const text = '{"name":"Zoë Ångström 王秀英 \u{1F9EA} \u{10FFFF}"}';
    const body = Buffer.from(text, 'utf8');
    const decoded = decodeJsonBody(body);
    expect(decoded).toBe(text);
    expect(Buffer.from(decoded, 'utf8').equals(body)).toBe(true);
  });
});

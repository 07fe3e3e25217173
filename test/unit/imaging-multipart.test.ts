import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { boundaryOf, multipartParts, parseMediaType } from '../../src/imaging/multipart.ts';
import { GatewayError } from '../../src/errors.ts';

async function* chunked(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function parse(bytes: Buffer, boundary: string, size: number, maxParts = 10) {
  const parts: Array<{ headers: Record<string, string>; body: Buffer }> = [];
  for await (const p of multipartParts(chunked(bytes, size), boundary, { maxParts })) {
    const pieces: Buffer[] = [];
    for await (const b of p.body) pieces.push(Buffer.from(b));
    parts.push({ headers: p.headers, body: Buffer.concat(pieces) });
  }
  return parts;
}

const B = 'dicom-boundary.42';
function body(parts: Buffer[], { preamble = '', epilogue = '' } = {}): Buffer {
  const out: Buffer[] = [Buffer.from(preamble ? `${preamble}\r\n` : '')];
  for (const p of parts)
    out.push(Buffer.from(`--${B}\r\nContent-Type: application/dicom\r\n\r\n`), p, Buffer.from('\r\n'));
  out.push(Buffer.from(`--${B}--\r\n${epilogue}`));
  return Buffer.concat(out);
}

describe('streaming multipart/related', () => {
  it('parses the content type of a STOW-RS request', () => {
    const m = parseMediaType(`multipart/related; type="application/dicom"; boundary=${B}`)!;
    expect(m.type).toBe('multipart/related');
    expect(m.params.type).toBe('application/dicom');
    expect(boundaryOf(m)).toBe(B);
    expect(parseMediaType('application/dicom')).toEqual({ type: 'application/dicom', params: {} });
    expect(() => boundaryOf(parseMediaType('multipart/related')!)).toThrow(GatewayError);
    expect(parseMediaType('not a type')).toBeUndefined();
  });

  it('yields every part byte for byte at any chunking, even with boundary look-alikes inside the data', async () => {
    const tricky = Buffer.concat([
      // A delimiter short of its last character; the byte after it is fixed, since a random one could complete it.
      Buffer.from(`\r\n--${B.slice(0, -1)}X`),
      randomBytes(3000),
      Buffer.from(`--${B}`),
      Buffer.from('\r\n--'),
    ]);
    const parts = [randomBytes(10_000), Buffer.alloc(0), tricky, randomBytes(1)];
    const bytes = body(parts, { preamble: 'ignored preamble', epilogue: 'ignored epilogue' });
    for (const size of [1, 2, 7, 61, 4096, 1 << 20]) {
      const got = await parse(bytes, B, size);
      expect(got.map((p) => p.body.toString('hex'))).toEqual(parts.map((p) => p.toString('hex')));
      expect(got[0]!.headers['content-type']).toBe('application/dicom');
    }
  });

  it('refuses a body without its closing boundary, without parts, with too many parts, or with an endless header', async () => {
    const full = body([randomBytes(100)]);
    const cases: Array<[string, Buffer, number, string]> = [
      ['cut short', full.subarray(0, full.length - 20), 10, 'BAD_REQUEST'],
      ['no boundary at all', randomBytes(500), 10, 'BAD_REQUEST'],
      ['no parts', Buffer.from(`--${B}--\r\n`), 10, 'BAD_REQUEST'],
      ['too many parts', body([randomBytes(10), randomBytes(10), randomBytes(10)]), 2, 'PAYLOAD_TOO_LARGE'],
      ['endless header', Buffer.from(`--${B}\r\nX: ${'a'.repeat(20_000)}`), 10, 'BAD_REQUEST'],
    ];
    for (const [name, bytes, maxParts, code] of cases) {
      const err = await parse(bytes, B, 1000, maxParts).catch((e: unknown) => e);
      expect((err as GatewayError).code, name).toBe(code);
    }
  });
});

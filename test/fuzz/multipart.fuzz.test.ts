import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { boundaryOf, multipartParts, parseMediaType } from '../../src/imaging/multipart.ts';
import { hostileString, mutatedBytes, nastyChar, rawBytes } from './arbitraries.ts';
import { fuzz, fuzzAsync, resolvesOr4xx, returnsOr4xx } from './harness.ts';

const B = 'dicom-0123456789abcdef';

async function* chunked(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

/** Read every part to its end, as the intake does (bounded, so a property run stays small). */
async function readAll(bytes: Buffer, boundary: string, chunk: number, maxParts = 4) {
  let parts = 0;
  for await (const p of multipartParts(chunked(bytes, chunk), boundary, { maxParts, maxHeaderBytes: 1024 })) {
    parts++;
    for await (const _ of p.body) {
      // each part's bytes are consumed
    }
  }
  return parts;
}

/** A well-formed body with 1 to 3 parts, optional preamble, epilogue and transport padding. */
const validBody = fc
  .record({
    parts: fc.array(fc.uint8Array({ maxLength: 80 }), { minLength: 1, maxLength: 3 }),
    preamble: fc.constantFrom('', 'preamble\r\n'),
    padding: fc.constantFrom('', ' ', '\t '),
    epilogue: fc.constantFrom('', '\r\nepilogue'),
  })
  .map(({ parts, preamble, padding, epilogue }) =>
    Buffer.concat([
      Buffer.from(preamble),
      ...parts.flatMap((p) => [
        Buffer.from(`--${B}${padding}\r\nContent-Type: application/dicom\r\n\r\n`),
        Buffer.from(p),
        Buffer.from('\r\n'),
      ]),
      Buffer.from(`--${B}--${epilogue}`),
    ]),
  );

describe('fuzz: multipart/related (src/imaging/multipart.ts)', () => {
  it('the valid seeds parse at any chunking', async () => {
    const [body] = fc.sample(validBody, { numRuns: 1, seed: 1 });
    expect(await readAll(body!, B, 1)).toBeGreaterThan(0);
  });

  it('parseMediaType never throws on any header text; boundaryOf returns one or refuses with a 4xx', () => {
    const header = fc.oneof(
      hostileString,
      fc.string({ unit: 'binary', maxLength: 120 }),
      fc
        .tuple(
          fc.constantFrom('multipart/related', 'application/dicom', 'MULTIPART/Related', 'a/b', '/', 'x'),
          fc.array(
            fc.tuple(
              fc.oneof(fc.constantFrom('boundary', 'type', 'BOUNDARY', ''), hostileString),
              fc.oneof(
                hostileString,
                fc.string({ maxLength: 80 }).map((s) => `"${s}"`),
              ),
            ),
            { maxLength: 4 },
          ),
        )
        .map(([t, ps]) => `${t}${ps.map(([k, v]) => `; ${k}=${v}`).join('')}`),
    );
    fuzz(
      header,
      (h) => {
        const media = parseMediaType(h);
        if (media) returnsOr4xx(() => boundaryOf(media));
      },
      { numRuns: 3000 },
    );
  });

  it('raw bytes: parts or a 4xx GatewayError', async () => {
    await fuzzAsync(
      fc.tuple(rawBytes, fc.integer({ min: 1, max: 64 })),
      async ([bytes, chunk]) => void (await resolvesOr4xx(() => readAll(bytes, B, chunk))),
      { numRuns: 1500 },
    );
  });

  it('valid bodies with one edit (boundary cut, CRLF lost, header garbled), at any chunking: parts or a 4xx', async () => {
    await fuzzAsync(
      fc.tuple(
        validBody.chain((b) => mutatedBytes(b)),
        fc.integer({ min: 1, max: 128 }),
        fc.integer({ min: 1, max: 4 }),
      ),
      async ([bytes, chunk, maxParts]) => void (await resolvesOr4xx(() => readAll(bytes, B, chunk, maxParts))),
      { numRuns: 3000 },
    );
  });

  it('hostile part headers (no colon, control characters, endless lines): parts or a 4xx', async () => {
    await fuzzAsync(
      fc.tuple(fc.array(fc.oneof(hostileString, nastyChar), { maxLength: 6 }), fc.integer({ min: 1, max: 64 })),
      async ([lines, chunk]) => {
        const body = Buffer.from(`--${B}\r\n${lines.join('\r\n')}\r\n\r\nDATA\r\n--${B}--`, 'utf8');
        await resolvesOr4xx(() => readAll(body, B, chunk));
      },
      { numRuns: 1500 },
    );
  });
});

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Base64UrlEncoder } from '../../src/jose/stream-seal.ts';

// The streaming encoder carries 1-2 bytes between chunks and encodes large chunks in slices:
// its output must equal one-shot base64url for any way of cutting the input.
function encodeInPieces(data: Buffer, cut: () => number): string {
  const e = new Base64UrlEncoder();
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length;) {
    const n = cut();
    parts.push(e.update(data.subarray(i, i + n)));
    i += n;
  }
  parts.push(e.final());
  return Buffer.concat(parts).toString('latin1');
}

describe('Base64UrlEncoder', () => {
  it.each([
    ['single bytes', () => 1],
    ['two bytes', () => 2],
    ['odd small pieces', () => 1 + Math.floor(Math.random() * 7)],
    ['pieces around the 48 KiB slice', () => 49152 + Math.floor(Math.random() * 5) - 2],
    ['large pieces', () => 150_000 + Math.floor(Math.random() * 100_000)],
    ['empty pieces in between', () => (Math.random() < 0.3 ? 0 : 1 + Math.floor(Math.random() * 5000))],
  ])('matches one-shot base64url with %s', (_name, cut) => {
    for (const size of [0, 1, 2, 3, 4, 5, 98_305, 400_001]) {
      const data = randomBytes(size);
      expect(encodeInPieces(data, cut)).toBe(data.toString('base64url'));
    }
  });

  it("does not keep a reference to the caller's chunk", () => {
    const e = new Base64UrlEncoder();
    const chunk = Buffer.from([1, 2, 3, 4]);
    const first = e.update(chunk);
    chunk.fill(0); // the carried byte must be a copy
    expect(Buffer.concat([first, e.final()]).toString('latin1')).toBe(Buffer.from([1, 2, 3, 4]).toString('base64url'));
  });
});

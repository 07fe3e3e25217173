import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { canonicalB64uBytes, isCanonicalB64u } from '../../src/jose/base64url.ts';

/** The rule spelled out: the alphabet, no padding, no length of 1 mod 4, and the unused low bits zero. */
function canonicalBySpec(s: string): boolean {
  if (!/^[A-Za-z0-9_-]*$/.test(s) || s.length % 4 === 1) return false;
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(s.at(-1) ?? 'A');
  if (s.length % 4 === 2) return (last & 0x0f) === 0;
  if (s.length % 4 === 3) return (last & 0x03) === 0;
  return true;
}

describe('canonicalB64uBytes', () => {
  it('gives the bytes of canonical text, and nothing for any other text (against the rule spelled out)', () => {
    const texts = ['', 'AA', 'AB', 'AAA', 'AAB', 'AAAA', 'AAAAA', 'AA==', 'A', 'Zg', 'Zh', 'Zm8', 'Zm9'];
    for (let n = 0; n < 40; n++) {
      const good = randomBytes(n).toString('base64url');
      texts.push(good);
      const at = Math.floor(Math.random() * (good.length + 1));
      for (const insert of ['=', '+', '/', ' ', '\n', '.', 'é', '\u0000', '-', '_', 'A'])
        texts.push(good.slice(0, at) + insert + good.slice(at));
      if (good.length) texts.push(good.slice(0, -1) + (good.at(-1) === 'B' ? 'C' : 'B'));
      texts.push(Buffer.from(good, 'base64url').toString('base64'));
    }
    for (const text of texts) {
      const bytes = canonicalB64uBytes(text);
      expect(bytes !== undefined, JSON.stringify(text)).toBe(canonicalBySpec(text));
      expect(isCanonicalB64u(text)).toBe(canonicalBySpec(text));
      if (bytes) expect(bytes.toString('base64url')).toBe(text);
    }
    expect(texts.filter(canonicalBySpec).length).toBeGreaterThan(60);
    expect(texts.filter((t) => !canonicalBySpec(t)).length).toBeGreaterThan(300);
  });
});

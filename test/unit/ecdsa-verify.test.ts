import { describe, expect, it } from 'vitest';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { compactVerify } from 'jose';
import { ecdsaSignatureVerifies } from '../../src/jose/verify.ts';

/** jose, the independent reference: whether it verifies the compact JWS with this key and algorithm. */
async function joseAccepts(jws: string, key: KeyObject, alg: string): Promise<boolean> {
  return compactVerify(jws, key, { algorithms: [alg] }).then(
    () => true,
    () => false,
  );
}

const b64u = (b: Buffer | string) => Buffer.from(b).toString('base64url');

describe('ecdsaSignatureVerifies: the signature check of partner content, against jose', () => {
  for (const [alg, curve, hash] of [
    ['ES256', 'P-256', 'sha256'],
    ['ES384', 'P-384', 'sha384'],
  ] as const) {
    it(`${alg}: accepts what jose accepts and refuses what it refuses`, async () => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
      const other = generateKeyPairSync('ec', { namedCurve: curve === 'P-256' ? 'P-384' : 'P-256' }).publicKey;
      const stranger = generateKeyPairSync('ec', { namedCurve: curve }).publicKey;
      const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
      const header = b64u(JSON.stringify({ alg, kid: 'k', typ: 'exchange+jwt' }));
      const cases: Array<{ input: string; signature: Buffer; key: KeyObject }> = [];
      for (let i = 0; i < 10; i++) {
        const input = `${header}.${b64u(JSON.stringify({ n: i, text: 'x'.repeat(i * 97) }))}`;
        const raw = sign(hash, Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
        const der = sign(hash, Buffer.from(input), privateKey);
        const flipped = Buffer.from(raw);
        flipped[i % raw.length]! ^= 1;
        cases.push(
          { input, signature: raw, key: publicKey },
          { input: `${input}A`, signature: raw, key: publicKey },
          { input, signature: flipped, key: publicKey },
          { input, signature: raw.subarray(1), key: publicKey },
          { input, signature: Buffer.concat([raw, Buffer.from([0])]), key: publicKey },
          { input, signature: der, key: publicKey },
          { input, signature: raw, key: stranger },
          { input, signature: Buffer.alloc(raw.length), key: publicKey },
        );
        if (i === 0) cases.push({ input, signature: raw, key: other }, { input, signature: raw, key: rsa });
      }
      const ours = cases.map((c) => ecdsaSignatureVerifies(alg, c.input, c.signature, c.key));
      const theirs = await Promise.all(cases.map((c) => joseAccepts(`${c.input}.${b64u(c.signature)}`, c.key, alg)));
      expect(ours).toEqual(theirs);
      expect(ours.filter(Boolean).length).toBe(10);
    });
  }
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Hsm } from '../../hsm/hsm.ts';
import { GatewayError } from '../../src/errors.ts';
import { deriveCek, openCompactJwe, type DecryptionKey, type OpenOptions } from '../../src/jose/open.ts';
import { checkHeader, parseCompactJwe } from '../../src/jose/jwe-header.ts';
import { createTestToken } from '../helpers/hsm.ts';
import { importEcDeriveKey } from '../helpers/hsm-import.ts';

/**
 * Published JWE vectors through the gateway's own decrypt entry point
 * (src/jose/open.ts), with the vectors' private keys imported into a real
 * SoftHSM token (C_CreateObject), so key agreement runs in the HSM exactly as
 * for production envelopes. test/fixtures/jwe-vector-exclusions.md lists, and
 * this test enforces, every valid vector we refuse by policy.
 */
const FIX = join(import.meta.dirname, '../fixtures');
const wycheproof = JSON.parse(readFileSync(join(FIX, 'wycheproof/json_web_encryption_test.json'), 'utf8')) as {
  testGroups: Array<{
    comment: string;
    private?: Record<string, string>;
    tests: Array<{ tcId: number; comment: string; jwe: unknown; pt?: string; result: string }>;
  }>;
};
const cookbookDir = join(FIX, 'jose-cookbook-rfc7520/jwe');
const cookbook = readdirSync(cookbookDir)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => ({ file: f, v: JSON.parse(readFileSync(join(cookbookDir, f), 'utf8')) }));
const exclusions = readFileSync(join(FIX, 'jwe-vector-exclusions.md'), 'utf8');

/** The tcIds listed in the exclusions file's Wycheproof table ("| 33 |" rows). */
function listedWycheproofIds(): Set<number> {
  const section = exclusions.split('## Wycheproof')[1]!.split('\n## ')[0]!;
  return new Set([...section.matchAll(/^\| (\d+) \|/gm)].map((m) => Number(m[1])));
}

function headerOf(jwe: unknown): Record<string, unknown> | undefined {
  if (typeof jwe !== 'string') return undefined;
  try {
    const h = JSON.parse(Buffer.from(jwe.split('.')[0]!, 'base64url').toString('utf8'));
    return h && typeof h === 'object' ? h : undefined;
  } catch {
    return undefined;
  }
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof GatewayError) return err.code;
    throw err;
  }
  return 'ACCEPTED';
}

describe('JWE vectors through src/jose/open.ts with HSM key agreement', () => {
  let hsm: Hsm;
  let ecKey: DecryptionKey;
  let options: OpenOptions;
  beforeAll(async () => {
    const token = createTestToken();
    hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 2 });
    const ecPrivate = wycheproof.testGroups.find((g) => g.comment === 'jwe_ec')!.private!;
    ecKey = {
      hsmId: await importEcDeriveKey(hsm, { crv: ecPrivate.crv!, d: ecPrivate.d! }),
      crv: 'P-256',
      kid: ecPrivate.kid,
    };
    // Wycheproof JWEs name no kid: this resolver maps "no kid" to the imported key.
    // The gateway's own resolver (src/inbound/decryption-keys.ts) refuses a missing kid.
    options = { hsm, kdf: 'in-token', resolveKey: async (kid) => (kid === undefined ? ecKey : undefined) };
  });
  afterAll(() => hsm?.close());

  it('Wycheproof json_web_encryption_test: each vector accepted or refused as expected, every policy refusal listed', async () => {
    const refusedValid = new Set<number>();
    let accepted = 0;
    for (const g of wycheproof.testGroups) {
      for (const t of g.tests) {
        const header = headerOf(t.jwe);
        const allowed = header?.alg === 'ECDH-ES' && header?.enc === 'A256GCM';
        const code = await refusal(
          openCompactJwe(typeof t.jwe === 'string' ? t.jwe : JSON.stringify(t.jwe), options).then((o) => {
            expect(o.plaintext.toString('hex'), `tcId ${t.tcId} plaintext`).toBe(t.pt);
          }),
        );
        if (t.result === 'valid' && allowed) {
          expect(code, `tcId ${t.tcId} ${t.comment}`).toBe('ACCEPTED');
          accepted++;
          continue;
        }
        expect(code, `tcId ${t.tcId} ${t.comment} must be refused`).not.toBe('ACCEPTED');
        // Why: an unusable header is malformed; a readable one names an algorithm outside the allowlist.
        // (Non-canonical base64url, e.g. tcId 3's tag modified in its unused bits, is malformed before anything else.)
        const canonical =
          typeof t.jwe === 'string' &&
          t.jwe.split('.').every((p) => /^[\w-]*$/.test(p) && Buffer.from(p, 'base64url').toString('base64url') === p);
        const why =
          header === undefined || typeof t.jwe !== 'string' || t.jwe.split('.').length !== 5 || !canonical
            ? 'JWE_MALFORMED'
            : allowed
              ? code
              : 'JWE_UNSUPPORTED_ALG';
        expect(code, `tcId ${t.tcId} ${t.comment}`).toBe(why);
        if (t.result === 'valid') refusedValid.add(t.tcId);
      }
    }
    expect(accepted).toBe(1); // tcId 78, acceptsEcdhEsA256Gcm
    expect([...refusedValid].sort((a, b) => a - b)).toEqual([...listedWycheproofIds()].sort((a, b) => a - b));
  });

  describe('mutations of the one allowlisted vector (tcId 78, ECDH-ES + A256GCM)', () => {
    const v78 = () => wycheproof.testGroups.flatMap((g) => g.tests).find((t) => t.tcId === 78)!.jwe as string;
    const parts = () => v78().split('.');
    const join5 = (p: string[]) => p.join('.');
    const flip = (b64: string, at = 0) => {
      const b = Buffer.from(b64, 'base64url');
      b[at]! ^= 1;
      return b.toString('base64url');
    };
    const withHeader = (mutate: (h: Record<string, unknown>) => void) => {
      const p = parts();
      const h = JSON.parse(Buffer.from(p[0]!, 'base64url').toString('utf8'));
      mutate(h);
      p[0] = Buffer.from(JSON.stringify(h)).toString('base64url');
      return join5(p);
    };
    const cases: Array<[string, () => string, string]> = [
      [
        'modified tag',
        () => {
          const p = parts();
          p[4] = flip(p[4]!);
          return join5(p);
        },
        'JWE_DECRYPT_FAILED',
      ],
      [
        'modified tag at its end',
        () => {
          const p = parts();
          p[4] = flip(p[4]!, 15);
          return join5(p);
        },
        'JWE_DECRYPT_FAILED',
      ],
      [
        'tag truncated by 1 byte',
        () => {
          const p = parts();
          p[4] = Buffer.from(p[4]!, 'base64url').subarray(0, 15).toString('base64url');
          return join5(p);
        },
        'JWE_MALFORMED',
      ],
      [
        'tag truncated by 8 bytes',
        () => {
          const p = parts();
          p[4] = Buffer.from(p[4]!, 'base64url').subarray(0, 8).toString('base64url');
          return join5(p);
        },
        'JWE_MALFORMED',
      ],
      [
        'missing tag',
        () => {
          const p = parts();
          p[4] = '';
          return join5(p);
        },
        'JWE_MALFORMED',
      ],
      ['missing tag and separator', () => parts().slice(0, 4).join('.'), 'JWE_MALFORMED'],
      [
        'modified ciphertext',
        () => {
          const p = parts();
          p[3] = flip(p[3]!);
          return join5(p);
        },
        'JWE_DECRYPT_FAILED',
      ],
      [
        'modified iv',
        () => {
          const p = parts();
          p[2] = flip(p[2]!);
          return join5(p);
        },
        'JWE_DECRYPT_FAILED',
      ],
      [
        'missing iv',
        () => {
          const p = parts();
          p[2] = '';
          return join5(p);
        },
        'JWE_MALFORMED',
      ],
      [
        'non-empty encrypted key',
        () => {
          const p = parts();
          p[1] = 'AAAA';
          return join5(p);
        },
        'JWE_MALFORMED',
      ],
      [
        'modified protected header (AAD)',
        () =>
          withHeader((h) => {
            h.cty = 'JWT';
          }),
        'JWE_DECRYPT_FAILED',
      ],
      [
        'zip',
        () =>
          withHeader((h) => {
            h.zip = 'DEF';
          }),
        'JWE_ZIP_UNSUPPORTED',
      ],
      [
        'crit',
        () =>
          withHeader((h) => {
            h.crit = ['exp'];
          }),
        'JWE_UNSUPPORTED_ALG',
      ],
      [
        'alg none',
        () =>
          withHeader((h) => {
            h.alg = 'none';
          }),
        'JWE_UNSUPPORTED_ALG',
      ],
      [
        'enc A128GCM',
        () =>
          withHeader((h) => {
            h.enc = 'A128GCM';
          }),
        'JWE_UNSUPPORTED_ALG',
      ],
      [
        'epk off the curve (Wycheproof tcId 51 point)',
        () =>
          withHeader((h) => {
            const t51 = wycheproof.testGroups.flatMap((g) => g.tests).find((t) => t.tcId === 51)!;
            h.epk = headerOf(t51.jwe)!.epk;
          }),
        'JWE_INVALID_EPK',
      ],
      [
        'epk with a private key',
        () =>
          withHeader((h) => {
            (h.epk as Record<string, string>).d = 'AAAA';
          }),
        'JWE_INVALID_EPK',
      ],
      [
        'epk coordinate too short',
        () =>
          withHeader((h) => {
            (h.epk as Record<string, string>).x = 'AAAA';
          }),
        'JWE_INVALID_EPK',
      ],
      [
        'epk on P-384 for a P-256 key',
        () =>
          withHeader((h) => {
            h.epk = {
              kty: 'EC',
              crv: 'P-384',
              x: 'mPUKT_bAWGHIhg0TpjjqVsP1rXWQu_vwVOHHtNkdYoA',
              y: 'mPUKT_bAWGHIhg0TpjjqVsP1rXWQu_vwVOHHtNkdYoA',
            };
          }),
        'JWE_INVALID_EPK',
      ],
      [
        'padded base64url',
        () => {
          const p = parts();
          p[2] = p[2] + '==';
          return join5(p);
        },
        'JWE_MALFORMED',
      ],
      [
        'standard base64 characters',
        () => {
          const p = parts();
          p[3] = p[3]!.replace(/^./, '+');
          return join5(p);
        },
        'JWE_MALFORMED',
      ],
      [
        'non-canonical base64url (unused tag bits set)',
        () => {
          const p = parts();
          const last = p[4]!.at(-1)!;
          const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
          p[4] = p[4]!.slice(0, -1) + alphabet[alphabet.indexOf(last) + 1]; // 16 bytes: 22 chars, the last carries 4 unused bits
          expect(Buffer.from(p[4], 'base64url').equals(Buffer.from(parts()[4]!, 'base64url'))).toBe(true);
          return join5(p);
        },
        'JWE_MALFORMED',
      ],
      ['six parts', () => v78() + '.AAAA', 'JWE_MALFORMED'],
      [
        'header not JSON',
        () => {
          const p = parts();
          p[0] = Buffer.from('{"alg":').toString('base64url');
          return join5(p);
        },
        'JWE_MALFORMED',
      ],
      [
        'header a JSON array',
        () => {
          const p = parts();
          p[0] = Buffer.from('["ECDH-ES"]').toString('base64url');
          return join5(p);
        },
        'JWE_MALFORMED',
      ],
    ];
    it.each(cases)('%s is refused', async (_name, make, code) => {
      expect(await refusal(openCompactJwe(make(), options))).toBe(code);
    });

    it('an unknown kid is refused before any key agreement', async () => {
      const named = withHeader((h) => {
        h.kid = 'not-our-key';
      });
      expect(await refusal(openCompactJwe(named, options))).toBe('JWE_UNKNOWN_KID');
    });

    it('the unmutated vector opens in both KDF modes', async () => {
      for (const kdf of ['in-token', 'extract'] as const) {
        const o = await openCompactJwe(v78(), { ...options, kdf });
        expect(o.plaintext.toString('hex')).toBe('666f6f');
      }
    });
  });

  it('RFC 7518 Appendix C: ECDH-ES key agreement in the HSM gives the published derived key (apu Alice, apv Bob, A128GCM)', async () => {
    // Bob's key in Appendix C is the same key as Wycheproof's jwe_ec group, already imported.
    const aliceEpk = {
      x: 'gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0',
      y: 'SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps',
    };
    const point = Buffer.concat([
      Buffer.from([4]),
      Buffer.from(aliceEpk.x, 'base64url'),
      Buffer.from(aliceEpk.y, 'base64url'),
    ]);
    for (const kdf of ['in-token', 'extract'] as const) {
      const key = await deriveCek(hsm, ecKey, point, 'A128GCM', Buffer.from('Alice'), Buffer.from('Bob'), 16, kdf);
      expect(key.toString('base64url')).toBe('VqqN6vgjbSBcIijNcacQGg');
    }
  });

  describe('RFC 7520 (JOSE Cookbook) §5 JWE examples', () => {
    it('5.5 ECDH-ES: the HSM Concat KDF yields the published CEK (both KDF modes); the envelope itself is refused (enc A128CBC-HS256)', async () => {
      const v = cookbook.find((c) => c.file.startsWith('5_5.'))!.v;
      const hsmId = await importEcDeriveKey(hsm, v.input.key);
      const jwe = parseCompactJwe(v.output.compact);
      const epk = jwe.header.epk as { x: string; y: string };
      const point = Buffer.concat([Buffer.from([4]), Buffer.from(epk.x, 'base64url'), Buffer.from(epk.y, 'base64url')]);
      for (const kdf of ['in-token', 'extract'] as const) {
        const cek = await deriveCek(
          hsm,
          { hsmId, crv: 'P-256' },
          point,
          'A128CBC-HS256',
          Buffer.alloc(0),
          Buffer.alloc(0),
          32,
          kdf,
        );
        expect(cek.toString('base64url')).toBe(v.encrypting_key.cek);
      }
      const key: DecryptionKey = { hsmId, crv: 'P-256', kid: v.input.key.kid };
      const code = await refusal(
        openCompactJwe(v.output.compact, {
          hsm,
          kdf: 'in-token',
          resolveKey: async (kid) => (kid === key.kid ? key : undefined),
        }),
      );
      expect(code).toBe('JWE_UNSUPPORTED_ALG');
    });

    it('every §5 example is refused as the exclusion list says (compact, flattened and general JSON)', async () => {
      const listed = exclusions.split('## RFC 7520')[1]!;
      for (const { file, v } of cookbook) {
        const section = file.split('.')[0]!.replace('_', '.');
        expect(listed, `RFC 7520 ${section} must be listed`).toContain(`| ${section} |`);
        if (v.output.compact) {
          const h = parseCompactJwe(v.output.compact).header;
          expect(await refusal(openCompactJwe(v.output.compact, options)), `${file} compact`).toBe(
            'JWE_UNSUPPORTED_ALG',
          );
          expect(h.alg === 'ECDH-ES' && h.enc === 'A256GCM').toBe(false);
        }
        for (const form of ['json', 'json_flat'] as const) {
          if (v.output[form])
            expect(await refusal(openCompactJwe(JSON.stringify(v.output[form]), options)), `${file} ${form}`).toBe(
              'JWE_MALFORMED',
            );
        }
      }
    });
  });

  it('the header allowlist needs no key: checkHeader refuses before resolveKey is ever called', async () => {
    let calls = 0;
    const counting: OpenOptions = {
      ...options,
      resolveKey: async () => {
        calls++;
        return ecKey;
      },
    };
    const t35 = wycheproof.testGroups.flatMap((g) => g.tests).find((t) => t.tcId === 35)!;
    expect(await refusal(openCompactJwe(t35.jwe as string, counting))).toBe('JWE_UNSUPPORTED_ALG');
    expect(() => checkHeader(parseCompactJwe(t35.jwe as string))).toThrow(GatewayError);
    expect(calls).toBe(0);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { compactDecrypt, importJWK } from 'jose';
import { Hsm, type PublicJwk } from '../../hsm/hsm.ts';
import type { OpenOptions } from '../../src/jose/open.ts';
import { sealStreamToFile } from '../../src/jose/stream-seal.ts';
import { openStream, openStreamToFile } from '../../src/jose/stream-open.ts';
import { GatewayError } from '../../src/errors.ts';
import { createTestToken } from '../helpers/hsm.ts';

/**
 * The streamed compact JWE: written by stream-seal.ts, read by
 * stream-open.ts with the HSM-held key, and checked against independent
 * implementations (the jose library and Debian's jose CLI) in both
 * directions. Nothing is released under the final name unless the tag verifies.
 */
const JOSE = '/usr/bin/jose';
const CTY = 'application/dicom';

/** Re-chunk a file into pieces of `size` bytes, so segment and base64 boundaries fall everywhere. */
async function* chunks(path: string, size: number): AsyncGenerator<Buffer> {
  for await (const c of createReadStream(path, { highWaterMark: size })) yield c as Buffer;
}

describe('streamed compact JWE (ECDH-ES + A256GCM)', () => {
  let hsm: Hsm;
  let dir: string;
  let recipient: PublicJwk & { kid: string };
  let options: OpenOptions;
  beforeAll(async () => {
    const token = createTestToken();
    hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 2 });
    const info = await hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'derive', 'imaging-stream-test');
    recipient = { ...info.publicJwk, kid: 'enc-stream' };
    options = {
      hsm,
      kdf: 'in-token',
      resolveKey: async (kid) => (kid === 'enc-stream' ? { hsmId: info.id, crv: 'P-256', kid } : undefined),
    };
    dir = mkdtempSync(join(tmpdir(), 'imaging-jwe-'));
  });
  afterAll(() => {
    hsm?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('round-trips every length around the 3-byte and 4-character boundaries, read in odd chunk sizes', async () => {
    for (const [n, readChunk] of [
      [0, 5],
      [1, 1],
      [2, 3],
      [3, 7],
      [4, 64 * 1024],
      [65_535, 13],
      [65_537, 1000],
      [3 * 1024 * 1024 + 1, 64 * 1024],
    ] as const) {
      const plain = randomBytes(n);
      const sealed = join(dir, `rt-${n}.jwe`);
      const len = await sealStreamToFile(
        Readable.from([plain.subarray(0, n >> 1), plain.subarray(n >> 1)]),
        recipient,
        CTY,
        sealed,
      );
      expect(len).toBe(readFileSync(sealed).length);
      const text = readFileSync(sealed, 'ascii');
      expect(text.split('.')).toHaveLength(5);
      const out = join(dir, `rt-${n}.out`);
      const opened = await openStreamToFile(chunks(sealed, readChunk), { ...options, cty: CTY, hashJwe: true }, out);
      expect(readFileSync(out).equals(plain), `length ${n}`).toBe(true);
      expect(opened.length).toBe(n);
      expect(opened.sha256.equals(createHash('sha256').update(plain).digest())).toBe(true);
      expect(opened.jweDigest).toBe('sha-256=' + createHash('sha256').update(text).digest('base64url'));
      expect(opened.header).toMatchObject({ alg: 'ECDH-ES', enc: 'A256GCM', kid: 'enc-stream', cty: CTY });
    }
  });

  it('hands the sink the protected header before the first plaintext byte', async () => {
    const sealed = join(dir, 'begin.jwe');
    await sealStreamToFile(Readable.from([randomBytes(100_000)]), recipient, CTY, sealed);
    const calls: string[] = [];
    const sink = {
      begin: (h: Record<string, unknown>) => void calls.push(`begin ${String(h.cty)}`),
      write: async (c: Buffer) => void calls.push(`write ${c.length > 0}`),
      commit: async () => void calls.push('commit'),
      discard: async () => void calls.push('discard'),
    };
    await openStream(chunks(sealed, 4096), options, sink);
    expect(calls[0]).toBe(`begin ${CTY}`);
    expect(calls.filter((c) => c.startsWith('begin'))).toHaveLength(1);
    expect(calls.at(-1)).toBe('commit');
  });

  it('the header carries exactly alg, enc, kid, epk and cty, and the jose library opens it', async () => {
    const { privateKey, publicKey } = await crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, [
      'deriveBits',
    ]);
    const pub = { ...(await crypto.subtle.exportKey('jwk', publicKey)), kid: 'soft' };
    const plain = randomBytes(200_001);
    const sealed = join(dir, 'lib.jwe');
    await sealStreamToFile(Readable.from([plain]), pub as never, CTY, sealed);
    const header = JSON.parse(Buffer.from(readFileSync(sealed, 'ascii').split('.')[0]!, 'base64url').toString());
    expect(Object.keys(header).sort()).toEqual(['alg', 'cty', 'enc', 'epk', 'kid']);
    const { plaintext } = await compactDecrypt(readFileSync(sealed, 'ascii'), privateKey);
    expect(Buffer.from(plaintext).equals(plain)).toBe(true);
  });

  it(
    'a ~20 MB envelope opens with the jose CLI to the same bytes, and a CLI-made JWE opens through the HSM',
    { timeout: 120_000 },
    async () => {
      const f = (name: string) => join(dir, name);
      execFileSync(JOSE, ['jwk', 'gen', '-i', '{"kty":"EC","crv":"P-256"}', '-o', f('cli.jwk')]);
      const cliPub = {
        ...JSON.parse(execFileSync(JOSE, ['jwk', 'pub', '-i', f('cli.jwk')], { encoding: 'utf8' })),
        kid: 'cli-key',
      };
      const plain = randomBytes(20 * 1024 * 1024);
      writeFileSync(f('plain.bin'), plain);
      await sealStreamToFile(createReadStream(f('plain.bin')), cliPub, CTY, f('big.jwe'));
      expect(readFileSync(f('big.jwe')).length).toBeGreaterThan(26_000_000);
      execFileSync(JOSE, ['jwe', 'dec', '-i', f('big.jwe'), '-k', f('cli.jwk'), '-O', f('cli-out.bin')], {
        maxBuffer: 1 << 20,
      });
      expect(
        createHash('sha256')
          .update(readFileSync(f('cli-out.bin')))
          .digest('hex'),
      ).toBe(createHash('sha256').update(plain).digest('hex'));

      // The other direction: the CLI seals to the HSM key; the streaming reader opens it.
      writeFileSync(f('hsm.jwk'), JSON.stringify({ ...recipient, alg: 'ECDH-ES' }));
      const small = randomBytes(1_000_003);
      writeFileSync(f('small.bin'), small);
      execFileSync(JOSE, [
        'jwe',
        'enc',
        '-i',
        '{"protected":{"alg":"ECDH-ES","enc":"A256GCM","kid":"enc-stream"}}',
        '-I',
        f('small.bin'),
        '-k',
        f('hsm.jwk'),
        '-o',
        f('cli.jwe'),
        '-c',
      ]);
      await openStreamToFile(chunks(f('cli.jwe'), 4093), options, f('from-cli.bin'));
      expect(readFileSync(f('from-cli.bin')).equals(small)).toBe(true);
    },
  );

  it('releases nothing when the tag fails, the stream is cut short, the check refuses, or the cty is wrong', async () => {
    const plain = randomBytes(300_000);
    const sealed = join(dir, 'bad.jwe');
    await sealStreamToFile(Readable.from([plain]), recipient, CTY, sealed);
    const text = readFileSync(sealed, 'ascii');
    const parts = text.split('.');
    const ct = parts[3]!;
    const flipped = ct.slice(0, 1000) + (ct[1000] === 'A' ? 'B' : 'A') + ct.slice(1001);
    const cases: Array<[string, string, OpenOptions & { cty?: string }, ((o: unknown) => void) | undefined, string]> = [
      ['tampered', [parts[0], '', parts[2], flipped, parts[4]].join('.'), options, undefined, 'JWE_DECRYPT_FAILED'],
      ['wrong tag', [parts[0], '', parts[2], ct, 'A'.repeat(22)].join('.'), options, undefined, 'JWE_DECRYPT_FAILED'],
      ['truncated', text.slice(0, text.length - 40_000), options, undefined, 'JWE_MALFORMED'],
      ['no tag', parts.slice(0, 4).join('.'), options, undefined, 'JWE_MALFORMED'],
      ['six parts', `${text}.AAAA`, options, undefined, 'JWE_MALFORMED'],
      [
        'bad base64',
        [parts[0], '', parts[2], ct.slice(0, 500) + '*' + ct.slice(501), parts[4]].join('.'),
        options,
        undefined,
        'JWE_MALFORMED',
      ],
      // Each outside the base64url alphabet (padding, the standard alphabet, space), mid-stream and in the last group.
      ...['=', '+', '/', ' '].flatMap((c, i): typeof cases => [
        [
          `bad base64 ${i} mid`,
          [parts[0], '', parts[2], ct.slice(0, 70_001) + c + ct.slice(70_002), parts[4]].join('.'),
          options,
          undefined,
          'JWE_MALFORMED',
        ],
        [
          `bad base64 ${i} end`,
          [parts[0], '', parts[2], ct.slice(0, -1) + c, parts[4]].join('.'),
          options,
          undefined,
          'JWE_MALFORMED',
        ],
      ]),
      [
        'refused by check',
        text,
        options,
        () => {
          throw new GatewayError('UNPROCESSABLE', 'digest differs');
        },
        'UNPROCESSABLE',
      ],
      ['wrong cty', text, { ...options, cty: 'application/pdf' }, undefined, 'JWE_MALFORMED'],
      ['unknown kid', text, { ...options, resolveKey: async () => undefined }, undefined, 'JWE_UNKNOWN_KID'],
    ];
    for (const [name, jwe, opts, check, code] of cases) {
      const out = join(dir, `refused-${name.replace(/ /g, '-')}.bin`);
      // In odd-sized chunks, so that bad characters also land next to chunk and group boundaries.
      const bytes = Buffer.from(jwe, 'ascii');
      const pieces = Array.from({ length: Math.ceil(bytes.length / 4093) }, (_, k) =>
        bytes.subarray(k * 4093, (k + 1) * 4093),
      );
      const err = await openStreamToFile(Readable.from(pieces), opts, out, check).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).code, name).toBe(code);
      expect(existsSync(out), name).toBe(false);
    }
    expect(readdirSync(dir).filter((n) => n.includes('.part-'))).toEqual([]);
  });

  it('refuses plaintext beyond maxBytes with 413 and leaves no file', async () => {
    const sealed = join(dir, 'big-limit.jwe');
    await sealStreamToFile(Readable.from([randomBytes(100_000)]), recipient, CTY, sealed);
    const err = await openStreamToFile(
      chunks(sealed, 8192),
      { ...options, maxBytes: 50_000 },
      join(dir, 'limit.bin'),
    ).catch((e: unknown) => e);
    expect((err as GatewayError).status).toBe(413);
    expect(existsSync(join(dir, 'limit.bin'))).toBe(false);
    expect(readdirSync(dir).filter((n) => n.includes('.part-'))).toEqual([]);
    void importJWK;
  });
});

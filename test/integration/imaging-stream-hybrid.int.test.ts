import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Hsm } from '../../hsm/hsm.ts';
import { openHybridCompactJwe, type HybridOpenOptions } from '../../src/jose/pq/hybrid-jwe.ts';
import { sealStreamToFile } from '../../src/jose/stream-seal.ts';
import { openStreamToFile } from '../../src/jose/stream-open.ts';
import { akpThumbprint } from '../../src/jose/thumbprint.ts';
import { createTestToken } from '../helpers/hsm.ts';
import { createPqPeer } from '../helpers/pq-peer.ts';

/**
 * The protocol v2 streamed content envelope (PROTOCOL.md §10.2, §14.2): the
 * hybrid header (ek, kem_kid) and the CEK from Z || T, written by
 * stream-seal.ts as the content streams and read by stream-open.ts with the
 * ECDH and KDF in SoftHSM. The same text opens with the whole-message v2
 * reader and with the independent noble peer, and the peer's envelopes open
 * here. Any tampered part is refused and nothing is released.
 */
const CTY = 'application/dicom';

async function* chunks(path: string, size: number): AsyncGenerator<Buffer> {
  for await (const c of createReadStream(path, { highWaterMark: size })) yield c as Buffer;
}
async function* text(s: string, size = 7): AsyncGenerator<Buffer> {
  for (let i = 0; i < s.length; i += size) yield Buffer.from(s.slice(i, i + size), 'latin1');
}

const segments = (jwe: string) => jwe.split('.') as [string, string, string, string, string];
const headerOf = (jwe: string) => JSON.parse(Buffer.from(segments(jwe)[0], 'base64url').toString('utf8'));
function withHeader(jwe: string, edit: (h: Record<string, unknown>) => void): string {
  const [, ...rest] = segments(jwe);
  const h = headerOf(jwe);
  edit(h);
  return [Buffer.from(JSON.stringify(h)).toString('base64url'), ...rest].join('.');
}
/** Flip one bit of a base64url segment's decoded bytes, keeping it canonical. */
const flip = (b64: string, at: number) => {
  const b = Buffer.from(b64, 'base64url');
  b[at]! ^= 0x01;
  return b.toString('base64url');
};

describe('imaging content envelope, protocol v2: streamed hybrid JWE', () => {
  let hsm: Hsm;
  let dir: string;
  let ec: { kty: 'EC'; crv: 'P-256'; x: string; y: string; kid: string };
  let kem: { kty: 'AKP'; alg: 'ML-KEM-768'; pub: string; kid: string };
  let kemPrivate: KeyObject;
  let options: HybridOpenOptions;
  const peer = createPqPeer();
  let n = 0;

  beforeAll(async () => {
    const token = createTestToken();
    hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 2 });
    const info = await hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'derive', 'imaging-hybrid-test');
    ec = { ...(info.publicJwk as { x: string; y: string }), kty: 'EC', crv: 'P-256', kid: 'gw-enc' };
    const k = generateKeyPairSync('ml-kem-768');
    kemPrivate = k.privateKey;
    const pub = (k.publicKey.export({ format: 'jwk' }) as { pub: string }).pub;
    kem = { kty: 'AKP', alg: 'ML-KEM-768', pub, kid: akpThumbprint({ alg: 'ML-KEM-768', pub }) };
    options = {
      hsm,
      kdf: 'in-token',
      resolveKey: async (kid) => (kid === 'gw-enc' ? { hsmId: info.id, crv: 'P-256', kid } : undefined),
      resolveKemKey: async (kid) => (kid === kem.kid ? kemPrivate : undefined),
    };
    dir = mkdtempSync(join(tmpdir(), 'imaging-hybrid-'));
  });
  afterAll(() => {
    hsm?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const seal = async (plain: Buffer, to = { ec, kem }): Promise<string> => {
    const path = join(dir, `sealed-${n++}.jwe`);
    await sealStreamToFile(
      Readable.from([plain.subarray(0, plain.length >> 1), plain.subarray(plain.length >> 1)]),
      to.ec,
      CTY,
      path,
      to.kem,
    );
    return path;
  };
  const open = (source: AsyncIterable<Buffer>, extra: Partial<HybridOpenOptions> & { version?: 1 | 2 } = {}) => {
    const out = join(dir, `out-${n++}`);
    return { out, opened: openStreamToFile(source, { ...options, cty: CTY, ...extra }, out) };
  };

  it('seals as the content streams and opens streamed in odd chunk sizes, the KDF over Z || T in the token and in the extract fallback', async () => {
    for (const [size, chunk, kdf] of [
      [0, 3, 'in-token'],
      [1, 1, 'extract'],
      [65_537, 1000, 'in-token'],
      [2 * 1024 * 1024 + 2, 64 * 1024, 'extract'],
    ] as const) {
      const plain = randomBytes(size);
      const path = await seal(plain);
      const jwe = readFileSync(path, 'latin1');
      const h = headerOf(jwe);
      expect(Object.keys(h)).toEqual(['alg', 'enc', 'kid', 'epk', 'ek', 'kem_kid', 'cty']);
      expect(h).toMatchObject({
        alg: 'x-ECDH-ES+ML-KEM-768',
        enc: 'A256GCM',
        kid: 'gw-enc',
        kem_kid: kem.kid,
        cty: CTY,
      });
      expect(Buffer.from(h.ek, 'base64url')).toHaveLength(1088);
      expect(segments(jwe)[1]).toBe('');
      const { out, opened } = open(chunks(path, chunk), { kdf, version: 2 });
      const o = await opened;
      expect(readFileSync(out).equals(plain), `length ${size}`).toBe(true);
      expect(o.sha256.equals(createHash('sha256').update(plain).digest())).toBe(true);
      expect(o.kid).toBe('gw-enc');
    }
  });

  it('the streamed text is an ordinary v2 compact JWE: the whole-message reader opens it', async () => {
    const plain = Buffer.from('DICM and a few bytes');
    const jwe = readFileSync(await seal(plain), 'latin1');
    const opened = await openHybridCompactJwe(jwe, options);
    expect(opened.plaintext.equals(plain)).toBe(true);
    expect(opened.header.cty).toBe(CTY);
  });

  it('interoperates with the independent noble peer in both directions', async () => {
    const plain = Buffer.from('a small DICOM-like payload for the peer');
    const toPeer = readFileSync(await seal(plain, { ec: peer.jwks.ecEnc, kem: peer.jwks.kemEnc }), 'latin1');
    const got = peer.open(toPeer);
    expect(got.plaintext).toBe(plain.toString());
    expect(got.header).toMatchObject({ alg: 'x-ECDH-ES+ML-KEM-768', kid: 'peer-enc', kem_kid: 'peer-kem', cty: CTY });
    const fromPeer = peer.seal('from the noble peer', { ec, kem }, { cty: CTY });
    const { out, opened } = open(text(fromPeer, 5), { version: 2 });
    await opened;
    expect(readFileSync(out, 'utf8')).toBe('from the noble peer');
    // A peer that leaves T out of the KDF (what breaking P-256 alone would give) is refused.
    const classicalOnly = peer.seal('no T', { ec, kem }, { cty: CTY, omitT: true });
    const refused = open(text(classicalOnly));
    await expect(refused.opened).rejects.toMatchObject({ code: 'JWE_DECRYPT_FAILED' });
    expect(existsSync(refused.out)).toBe(false);
  });

  it('a tampered ek, epk, ciphertext or tag is refused and releases nothing', async () => {
    const plain = randomBytes(10_000);
    const jwe = readFileSync(await seal(plain), 'latin1');
    const [, , iv, ct, tag] = segments(jwe);
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
    const tampered: Record<string, string> = {
      ek: withHeader(jwe, (h) => void (h.ek = flip(h.ek as string, 700))),
      epk: withHeader(jwe, (h) => void (h.epk = { kty: 'EC', crv: 'P-256', x: other.x, y: other.y })),
      ciphertext: [segments(jwe)[0], '', iv, flip(ct, 5000), tag].join('.'),
      tag: [segments(jwe)[0], '', iv, ct, flip(tag, 3)].join('.'),
    };
    for (const [what, bad] of Object.entries(tampered)) {
      const { out, opened } = open(text(bad, 4096));
      await expect(opened, what).rejects.toMatchObject({ code: 'JWE_DECRYPT_FAILED' });
      expect(existsSync(out), what).toBe(false);
    }
    // The untampered text still opens: the refusals above are the tampering's.
    const { opened } = open(text(jwe, 4096));
    await expect(opened).resolves.toMatchObject({ length: plain.length });
  });

  it('the versions never cross: v1 where v2 is expected is PROTOCOL_MIXED; without ML-KEM keys or relabelled v1, v2 is refused', async () => {
    const plain = Buffer.from('version');
    const v2 = readFileSync(await seal(plain), 'latin1');
    const v1Path = join(dir, `v1-${n++}.jwe`);
    await sealStreamToFile(Readable.from([plain]), ec, CTY, v1Path);
    const v1 = readFileSync(v1Path, 'latin1');
    await expect(open(text(v1), { version: 2 }).opened).rejects.toMatchObject({ code: 'PROTOCOL_MIXED' });
    await expect(open(text(v2), { version: 1 }).opened).rejects.toMatchObject({ code: 'PROTOCOL_MIXED' });
    await expect(open(text(v2), { resolveKemKey: undefined }).opened).rejects.toMatchObject({
      code: 'JWE_UNSUPPORTED_ALG',
    });
    const relabelled = withHeader(v2, (h) => void (h.alg = 'ECDH-ES'));
    await expect(open(text(relabelled)).opened).rejects.toMatchObject({ code: 'JWE_UNSUPPORTED_ALG' });
    const unknownKem = withHeader(v2, (h) => void (h.kem_kid = 'not-ours'));
    await expect(open(text(unknownKem)).opened).rejects.toMatchObject({ code: 'JWE_UNKNOWN_KID' });
    // And v1 still opens as before.
    await expect(open(text(v1), { version: 1 }).opened).resolves.toMatchObject({ length: plain.length });
  });
});

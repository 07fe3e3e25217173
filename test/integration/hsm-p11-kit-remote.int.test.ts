/**
 * Every PKCS#11 operation the gateway uses, through p11-kit's remoting (the
 * network-HSM stand-in of docker-compose and the many-process test): the
 * gateway's Hsm on p11-kit-client.so, the token served by `p11-kit server`
 * over a Unix socket. Each result is checked against software crypto or
 * against the same key used with SoftHSM loaded directly.
 *
 * The remoting carries only the mechanisms (and mechanism parameters) its
 * version knows: p11-kit 0.24 (Debian 12) refuses CKM_ECDH1_DERIVE with its
 * parameters, CKM_AES_GCM and CKM_AES_KEY_WRAP_PAD. ECDH and AES-GCM are
 * checked to work correctly or to be refused with CKR_MECHANISM_INVALID while
 * the mechanism is absent from the remote mechanism list (what the gateway
 * checks at start), never to give a wrong result; the key wrap must work
 * either way (composed from AES-ECB where it is not carried). The outcome of
 * each is printed. Signing, HMAC, digests, key generation and the key wrap
 * must work: the many-process test runs on them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, createPublicKey, diffieHellman, generateKeyPairSync, randomBytes, verify } from 'node:crypto';
import type { JWK } from 'jose';
import { createTestToken, type TestToken } from '../helpers/hsm.ts';
import { P11_KIT_CLIENT, p11KitGatewayConfig, p11KitServer, type P11KitServer } from '../helpers/p11-kit.ts';
import { claimsFor, publishedEncKey, seal, signContent, softPartner } from '../helpers/envelopes.ts';
import { buildApp } from '../../plugins/app.ts';
import { Hsm } from '../../hsm/hsm.ts';
import { pkcs11js } from '../../hsm/module.ts';
import { ckrName } from '../../hsm/errors.ts';

/** What each optional operation did through the remoting: worked (result checked), or refused as the version's gap. */
const outcomes: Record<string, 'ok' | 'refused' | 'composed'> = {};

const lenPrefixed = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
const otherInfo = Buffer.concat([
  lenPrefixed(Buffer.from('A256GCM')),
  lenPrefixed(Buffer.alloc(0)),
  lenPrefixed(Buffer.alloc(0)),
  Buffer.from([0, 0, 1, 0]),
]);
/** The software Concat KDF (SHA-256), the reference. */
function concatKdf(z: Buffer, info: Buffer, keyBytes: number): Buffer {
  const out: Buffer[] = [];
  for (let i = 1; out.length * 32 < keyBytes; i++)
    out.push(
      createHash('sha256')
        .update(Buffer.from([0, 0, 0, i]))
        .update(z)
        .update(info)
        .digest(),
    );
  return Buffer.concat(out).subarray(0, keyBytes);
}

describe('the gateway HSM operations through p11-kit remoting', () => {
  let token: TestToken;
  let server: P11KitServer;
  let remote: Hsm;
  let direct: Hsm;

  beforeAll(async () => {
    token = createTestToken();
    server = p11KitServer(token);
    await server.start();
    process.env.P11_KIT_SERVER_ADDRESS = server.address;
    remote = Hsm.open({ library: P11_KIT_CLIENT, tokenLabel: token.label, pin: token.pin, sessions: 4 });
    direct = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 1 });
  });
  afterAll(async () => {
    console.log(
      `p11-kit remoting: ${Object.entries(outcomes)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`,
    );
    remote?.close();
    direct?.close();
    await server?.kill();
    delete process.env.P11_KIT_SERVER_ADDRESS;
  });

  it('signs ES256 (C_SignAsync), many at once across the pool, each signature valid', async () => {
    const key = await remote.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'sign', 'p11-kit-sig');
    const pub = createPublicKey({ key: key.publicJwk as never, format: 'jwk' });
    const data = Array.from({ length: 32 }, (_, i) => Buffer.from(`payload ${i}`));
    const sigs = await Promise.all(data.map((d) => remote.sign(key.id, 'ES256', d)));
    for (const [i, sig] of sigs.entries())
      expect(verify('sha256', data[i]!, { key: pub, dsaEncoding: 'ieee-p1363' }, sig), `signature ${i}`).toBe(true);
  });

  /** Run an operation whose mechanism the remoting may not carry: it works, or it is refused and not offered. */
  async function whereCarried(name: string, mechanism: number, run: () => Promise<void>): Promise<void> {
    const offered = await remote.withSession((session, p11) =>
      p11.C_GetMechanismList(p11.C_GetSessionInfo(session).slotID),
    );
    try {
      await run();
      outcomes[name] = 'ok';
    } catch (err) {
      if (ckrName(err) !== 'CKR_MECHANISM_INVALID') throw err;
      expect(offered, `${name}: offered in the mechanism list, yet refused`).not.toContain(mechanism);
      outcomes[name] = 'refused';
    }
  }

  it("derives the ECDH-ES key ('in-token': C_DeriveKey then C_DigestKey; 'extract') as software does", async () => {
    const key = await remote.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'derive', 'p11-kit-enc');
    const eph = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = eph.publicKey.export({ format: 'jwk' }) as JWK;
    const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
    const z = diffieHellman({
      privateKey: eph.privateKey,
      publicKey: createPublicKey({ key: key.publicJwk as never, format: 'jwk' }),
    });
    const expected = concatKdf(z, otherInfo, 32).toString('hex');
    await whereCarried('ecdh-derive', pkcs11js.CKM_ECDH1_DERIVE, async () => {
      expect((await remote.deriveConcatKdf(key.id, point, 32, otherInfo, 32, 'in-token')).toString('hex')).toBe(
        expected,
      );
      expect((await remote.deriveConcatKdf(key.id, point, 32, otherInfo, 32, 'extract')).toString('hex')).toBe(
        expected,
      );
      // The hybrid (protocol v2) form: Z || T digested in the token.
      const t = randomBytes(32);
      expect((await remote.deriveConcatKdf(key.id, point, 32, otherInfo, 32, 'in-token', t)).toString('hex')).toBe(
        concatKdf(Buffer.concat([z, t]), otherInfo, 32).toString('hex'),
      );
    });
  });

  it('wraps and unwraps (RFC 5649) byte for byte as SoftHSM does natively, composed from AES-ECB if need be', async () => {
    const offered = await remote.withSession((session, p11) =>
      p11.C_GetMechanismList(p11.C_GetSessionInfo(session).slotID),
    );
    outcomes['key-wrap'] = offered.includes(pkcs11js.CKM_AES_KEY_WRAP_PAD) ? 'ok' : 'composed';
    const id = await remote.generateWrappingKey('p11-kit-wrap');
    for (const length of [32, 64]) {
      const secret = randomBytes(length);
      const wrapped = await remote.wrapSecret(id, secret);
      expect(wrapped.equals(await direct.wrapSecret(id, secret)), `${length} bytes`).toBe(true);
      expect((await remote.unwrapSecret(id, wrapped, length)).equals(secret)).toBe(true);
      expect((await direct.unwrapSecret(id, wrapped, length)).equals(secret)).toBe(true);
      const altered = Buffer.from(wrapped);
      altered[5]! ^= 1;
      await expect(remote.unwrapSecret(id, altered, length)).rejects.toThrow(/integrity|CKR_/);
    }
  });

  it('encrypts and decrypts with CKM_AES_GCM (IV, associated data, tag), interchangeably with SoftHSM', async () => {
    const id = await remote.generateSecretKey('p11-kit-aes');
    const iv = randomBytes(12);
    const aad = Buffer.from('factor:alice');
    const plain = randomBytes(20);
    const ctDirect = await direct.encrypt(id, iv, aad, plain);
    await whereCarried('aes-gcm', pkcs11js.CKM_AES_GCM, async () => {
      const ct = await remote.encrypt(id, iv, aad, plain);
      expect(ct.equals(ctDirect)).toBe(true);
      expect((await remote.decrypt(id, iv, aad, ct)).equals(plain)).toBe(true);
      await expect(remote.decrypt(id, iv, Buffer.from('factor:bob'), ct)).rejects.toThrow();
    });
  });

  it('computes the blinding HMAC (CKM_SHA256_HMAC) as SoftHSM does', async () => {
    const key = await remote.generateHmacKey('p11-kit-blinding');
    const messages = [Buffer.from('urn:oid:1|123'), Buffer.from('urn:oid:1|456')];
    const viaRemote = await remote.hmacSha256(key.id, messages);
    const viaDirect = await direct.hmacSha256(key.id, messages);
    expect(viaRemote.map((b) => b.toString('hex'))).toEqual(viaDirect.map((b) => b.toString('hex')));
    expect(viaRemote[0]!.equals(viaRemote[1]!)).toBe(false);
  });

  it('lists the mechanisms (the post-quantum check) and the keys like SoftHSM does', async () => {
    expect(await remote.offersPqMechanisms()).toBe(await direct.offersPqMechanisms());
    expect((await remote.listKeys()).map((k) => k.id).sort()).toEqual(
      (await direct.listKeys()).map((k) => k.id).sort(),
    );
  });

  it('a gateway on this module names what it lacks at start, and answers a delivery it cannot open 503, never 500', async () => {
    const lines: string[] = [];
    const config = await p11KitGatewayConfig(token);
    const app = await buildApp(config, {
      logger: { level: 'error', stream: { write: (line: string) => void lines.push(line) } },
    });
    try {
      await app.listen({ port: 0, host: '127.0.0.1' });
      const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
      const partner = await softPartner('https://partner-p11-kit.test');
      await app.ctx.directory.add({ id: partner.id, endpoint: `${partner.id}/inbox`, jwks: partner.jwks });
      const claims = claimsFor(partner, config.org, { resourceType: 'Bundle', type: 'collection', entry: [] });
      const res = await fetch(`${url}/inbox`, {
        method: 'POST',
        headers: { 'content-type': 'application/jose' },
        body: seal(await publishedEncKey(url), await signContent(partner, claims)),
      });
      const startLog = lines.find((l) => l.includes('does not offer mechanisms'));
      if (outcomes['ecdh-derive'] === 'refused') {
        expect(res.status).toBe(503);
        expect(res.headers.get('retry-after')).toBe('60');
        expect(await res.json()).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'transient' }] });
        expect(startLog).toContain('CKM_ECDH1_DERIVE (opening partner deliveries');
      } else {
        expect(res.status).toBe(200);
        expect(startLog ?? '').not.toContain('CKM_ECDH1_DERIVE');
      }
      expect(await app.ctx.hsm.missingMechanisms()).toHaveLength(
        Object.values(outcomes).filter((o) => o === 'refused').length,
      );
    } finally {
      await app.close();
    }
  });
});

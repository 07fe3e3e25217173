import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import request from 'supertest';
import { compactVerify, flattenedVerify, importJWK, type JWK } from 'jose';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { createTestToken } from '../helpers/hsm.ts';
import { Hsm, type SignAlg } from '../../hsm/hsm.ts';
import { hsmSigner } from '../../src/jose/signer.ts';
import { signCompact, signDetachedStream, signJson } from '../../src/jose/jws.ts';
import { verifyCompact, verifyDetached } from '../../src/jose/verify.ts';
import { thumbprint } from '../../src/jose/thumbprint.ts';
import { GatewayError } from '../../src/errors.ts';

const work = mkdtempSync(join(tmpdir(), 'gw-jws-interop-'));

/** Debian's jose CLI (latchset): exit status 0 only if the JWS verifies with a key of the set. */
function joseCliVerify(jws: string, jwks: object, detachedPayload?: Buffer): { ok: boolean; payload: string } {
  const jwsFile = join(work, `${randomBytes(4).toString('hex')}.jws`);
  const keyFile = join(work, `${randomBytes(4).toString('hex')}.jwks`);
  writeFileSync(jwsFile, jws);
  writeFileSync(keyFile, JSON.stringify(jwks));
  const args = ['jws', 'ver', '-i', jwsFile, '-k', keyFile, '-O', '-'];
  if (detachedPayload) {
    const payloadFile = join(work, `${randomBytes(4).toString('hex')}.bin`);
    writeFileSync(payloadFile, detachedPayload);
    args.splice(5, 0, '-I', payloadFile);
  }
  const res = spawnSync('/usr/bin/jose', args, { encoding: 'utf8' });
  return { ok: res.status === 0, payload: res.stdout };
}

const tamper = (jws: string) => {
  const [h, p, s] = jws.split('.');
  const sig = Buffer.from(s!, 'base64url');
  sig[10]! ^= 0x01;
  return `${h}.${p}.${sig.toString('base64url')}`;
};

describe('JWS signed in the HSM verifies with independent implementations', () => {
  let gw: TestGateway;
  let jwks: { keys: Array<JWK & { kid: string; use: string; alg: string }> };
  beforeAll(async () => {
    gw = await startTestGateway();
    jwks = (await request(gw.app.server).get('/.well-known/jwks.json').expect(200)).body;
  });
  afterAll(async () => gw?.close());

  it('the gateway signing key (ES256) verifies with jose compactVerify against the published JWKS', async () => {
    const signer = gw.app.keyring.signer('sig');
    const jws = await signJson(signer, { hello: 'world', n: 42 }, { typ: 'test+jws' });
    const published = jwks.keys.find((k) => k.kid === signer.kid);
    expect(published).toMatchObject({ use: 'sig', alg: 'ES256', kty: 'EC', crv: 'P-256' });
    const { payload, protectedHeader } = await compactVerify(jws, await importJWK(published!, 'ES256'), {
      algorithms: ['ES256'],
    });
    expect(protectedHeader).toEqual({ typ: 'test+jws', alg: 'ES256', kid: signer.kid });
    expect(JSON.parse(Buffer.from(payload).toString())).toEqual({ hello: 'world', n: 42 });
    await expect(compactVerify(tamper(jws), await importJWK(published!, 'ES256'))).rejects.toThrow(
      /signature verification failed/,
    );
  });

  it('verifies with Debian jose CLI (jose jws ver) against the JWKS fetched over HTTP', async () => {
    const fetched = (await (await fetch(`${gw.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ use: string }> };
    const signer = gw.app.keyring.signer('sig');
    const jws = await signCompact(signer, 'FHIR bundle bytes', { typ: 'test+jws' });
    const good = joseCliVerify(jws, fetched);
    expect(good).toEqual({ ok: true, payload: 'FHIR bundle bytes' });
    expect(joseCliVerify(tamper(jws), fetched).ok).toBe(false);
    // The CLI really uses the key: a JWKS without our signing key fails.
    expect(joseCliVerify(jws, { keys: fetched.keys.filter((k) => k.use !== 'sig') }).ok).toBe(false);
  });

  it('verifies with our own verifier (src/jose/verify.ts), which refuses a tampered signature with JWS_SIGNATURE_INVALID', async () => {
    const signer = gw.app.keyring.signer('sig');
    const published = jwks.keys.find((k) => k.kid === signer.kid)!;
    const jws = await signJson(signer, { a: 1 }, { typ: 'test+jws' });
    const ok = await verifyCompact(jws, async () => published, { typ: 'test+jws' });
    expect(ok.header.kid).toBe(signer.kid);
    const err = await verifyCompact(tamper(jws), async () => published).catch((e) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect(err.code).toBe('JWS_SIGNATURE_INVALID');
  });

  it('signDetachedStream (RFC 7797, b64=false) over a stream verifies with verifyDetached, jose and node:crypto', async () => {
    const signer = gw.app.keyring.signer('sig');
    const published = jwks.keys.find((k) => k.kid === signer.kid)!;
    const content = randomBytes(3 * 65_536 + 17);
    const chunks = [content.subarray(0, 65_536), content.subarray(65_536, 150_000), content.subarray(150_000)];
    const { jws, length } = await signDetachedStream(signer, Readable.from(chunks), { typ: 'test+jws' });
    expect(length).toBe(content.length);
    expect(jws.split('.')[1]).toBe('');
    const header = await verifyDetached(jws, content, async () => published);
    expect(header).toMatchObject({ alg: 'ES256', kid: signer.kid, b64: false, crit: ['b64'] });
    const [protectedHeader, , signature] = jws.split('.');
    const viaJose = await flattenedVerify(
      { protected: protectedHeader!, payload: content, signature: signature! },
      await importJWK(published, 'ES256'),
    );
    expect(Buffer.from(viaJose.payload).equals(content)).toBe(true);
    // Debian's jose CLI (v11) does not implement RFC 7797, so the third check is
    // node:crypto (OpenSSL) over the RFC 7797 signing input ASCII(header) || '.' || content.
    const input = Buffer.concat([Buffer.from(`${protectedHeader}.`, 'ascii'), content]);
    expect(
      verify(
        'sha256',
        input,
        { key: createPublicKey({ key: published as never, format: 'jwk' }), dsaEncoding: 'ieee-p1363' },
        Buffer.from(signature!, 'base64url'),
      ),
    ).toBe(true);
    const flipped = Buffer.from(content);
    flipped[100_000]! ^= 0x80;
    await expect(verifyDetached(jws, flipped, async () => published)).rejects.toMatchObject({
      code: 'JWS_SIGNATURE_INVALID',
    });
  });

  describe('ES384 and PS256 keys generated in the HSM', () => {
    let hsm: Hsm;
    beforeAll(() => {
      const token = createTestToken();
      hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 2 });
    });
    afterAll(() => hsm?.close());

    const cases: Array<{ alg: SignAlg; spec: Parameters<Hsm['generateKeyPair']>[0]; sigBytes: number | undefined }> = [
      { alg: 'ES384', spec: { kty: 'EC', crv: 'P-384' }, sigBytes: 96 },
      { alg: 'PS256', spec: { kty: 'RSA', bits: 2048 }, sigBytes: 256 },
    ];
    for (const { alg, spec, sigBytes } of cases) {
      it(`${alg}: compactVerify, verifyCompact and the jose CLI accept it; a tampered one is refused`, async () => {
        const info = await hsm.generateKeyPair(spec, 'sign', `interop-${alg}`);
        expect(info).toMatchObject({ sensitive: true, extractable: false });
        const kid = thumbprint(info.publicJwk);
        const signer = hsmSigner(hsm, info.id, alg, kid);
        const jws = await signJson(signer, { alg, ok: true });
        expect(Buffer.from(jws.split('.')[2]!, 'base64url').length).toBe(sigBytes);
        const jwk = { ...info.publicJwk, kid, alg, use: 'sig' } as JWK;
        const { protectedHeader } = await compactVerify(jws, await importJWK(jwk, alg), { algorithms: [alg] });
        expect(protectedHeader).toEqual({ alg, kid });
        expect((await verifyCompact(jws, async () => jwk)).header.alg).toBe(alg);
        expect(joseCliVerify(jws, { keys: [jwk] }).ok).toBe(true);
        expect(joseCliVerify(tamper(jws), { keys: [jwk] }).ok).toBe(false);
        await expect(verifyCompact(tamper(jws), async () => jwk)).rejects.toMatchObject({
          code: 'JWS_SIGNATURE_INVALID',
        });
      });
    }
  });
});

import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { signJson } from '../../src/jose/jws.ts';
import type { Signer } from '../../src/jose/signer.ts';
import { ANNOUNCE_TYP, signAnnouncement, verifyAnnouncement } from '../../src/protocol/imaging-announcement.ts';
import type { PartnerJwk } from '../../src/directory/directory.ts';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signer: Signer = {
  alg: 'ES256',
  kid: 'sender-key-1',
  sign: async (data) => sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' }),
  signDigest: () => Promise.reject(new Error('not used')),
};
const jwk = { ...publicKey.export({ format: 'jwk' }), kid: signer.kid, alg: 'ES256', use: 'sig' } as PartnerJwk;
const now = Date.now();
const checks = {
  directory: {
    sender: async (id: string) => (id === 'sender.example' ? ({ id, status: 'active' } as never) : undefined),
    verificationKey: async () => jwk,
  },
  org: 'us.example',
  clockSkewMs: 60_000,
  maxAgeMs: 3_600_000,
  now,
};
const claims = {
  iss: 'sender.example',
  aud: 'us.example',
  iat: Math.floor(now / 1000),
  jti: '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b',
  exchange: '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c',
};

async function refusal(jws: string): Promise<GatewayError> {
  const err = await verifyAnnouncement(jws, checks).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  return err as GatewayError;
}

describe('imaging announcement verification', () => {
  it('accepts a well-formed announcement from an active sender', async () => {
    const a = await verifyAnnouncement(await signAnnouncement(signer, claims), checks);
    expect(a).toMatchObject({ ...claims, senderKid: signer.kid });
  });

  it('refuses a segment that is not canonical base64url, though it decodes to a valid signature', async () => {
    const jws = await signAnnouncement(signer, claims);
    // A 64-byte signature leaves 4 unused bits in its last character: set them.
    const sig = jws.split('.')[2]!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(sig.at(-1)!);
    const forged = `${jws.slice(0, -1)}${alphabet[(last & 0b110000) | 0b0101]}`;
    expect(Buffer.from(forged.split('.')[2]!, 'base64url')).toEqual(Buffer.from(sig, 'base64url'));
    const err = await refusal(forged);
    expect(err.code).toBe('JWS_MALFORMED');
    expect(err.status).toBe(400);
    expect(err.expression).toEqual(['part[0]']);
  });

  it('refuses a crit header explicitly, before any key is used', async () => {
    const jws = await signJson(signer, claims, { typ: ANNOUNCE_TYP, crit: ['exp'], exp: claims.iat + 60 });
    const err = await refusal(jws);
    expect(err.code).toBe('JWS_MALFORMED');
    expect(err.message).toMatch(/crit/);
  });

  it('refuses a non-number iat as invalid claims, as the signed content does', async () => {
    const err = await refusal(await signJson(signer, { ...claims, iat: 'now' }, { typ: ANNOUNCE_TYP }));
    expect(err.code).toBe('CLAIMS_INVALID');
  });

  it('refuses a header or claims that name a member twice, as the signed content does', async () => {
    const signRaw = (headerText: string, claimsText: string) => {
      const input = `${Buffer.from(headerText).toString('base64url')}.${Buffer.from(claimsText).toString('base64url')}`;
      const sig = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
      return `${input}.${sig.toString('base64url')}`;
    };
    const header = `{"alg":"ES256","kid":"${signer.kid}","typ":"${ANNOUNCE_TYP}"`;
    expect((await refusal(signRaw(`${header},"kid":"${signer.kid}"}`, JSON.stringify(claims)))).code).toBe(
      'JWS_MALFORMED',
    );
    const twice = JSON.stringify(claims).replace('"aud":', '"aud":"elsewhere.example","aud":');
    expect((await refusal(signRaw(`${header}}`, twice))).code).toBe('CLAIMS_INVALID');
    expect(await verifyAnnouncement(signRaw(`${header}}`, JSON.stringify(claims)), checks)).toMatchObject(claims);
  });
});

describe('imaging announcement, protocol v2 (dual-signed)', () => {
  const dsa = generateKeyPairSync('ml-dsa-65');
  const pq = { kid: 'sender-pq-1', privateKey: dsa.privateKey };
  const pqJwk = {
    ...(dsa.publicKey.export({ format: 'jwk' }) as object),
    kid: pq.kid,
    use: 'sig',
  } as PartnerJwk;
  const dualChecks = {
    ...checks,
    directory: {
      ...checks.directory,
      verificationKey: async (_p: unknown, kid: string) => (kid === pq.kid ? pqJwk : jwk),
    },
  };

  it('is signed ES256 then ML-DSA-65 over the same claims, and verifies as version 2', async () => {
    const jws = await signAnnouncement(signer, claims, pq);
    const doc = JSON.parse(jws) as { signatures: Array<{ protected: string }> };
    expect(doc.signatures.map((s) => JSON.parse(Buffer.from(s.protected, 'base64url').toString()))).toEqual([
      { typ: ANNOUNCE_TYP, alg: 'ES256', kid: signer.kid },
      { typ: ANNOUNCE_TYP, alg: 'ML-DSA-65', kid: pq.kid },
    ]);
    const a = await verifyAnnouncement(jws, dualChecks);
    expect(a).toMatchObject({ ...claims, protocol: 2, senderKid: signer.kid });
    // The compact form stays version 1.
    expect((await verifyAnnouncement(await signAnnouncement(signer, claims), dualChecks)).protocol).toBe(1);
  });

  it('refuses it when the ML-DSA-65 signature is by another key, or one signature is dropped', async () => {
    const other = { kid: pq.kid, privateKey: generateKeyPairSync('ml-dsa-65').privateKey };
    await expect(verifyAnnouncement(await signAnnouncement(signer, claims, other), dualChecks)).rejects.toMatchObject({
      code: 'JWS_SIGNATURE_INVALID',
    });
    const doc = JSON.parse(await signAnnouncement(signer, claims, pq)) as { signatures: unknown[] };
    doc.signatures.pop();
    await expect(verifyAnnouncement(JSON.stringify(doc), dualChecks)).rejects.toMatchObject({ code: 'JWS_MALFORMED' });
  });
});

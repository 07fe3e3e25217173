import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { signJson } from '../../src/jose/jws.ts';
import type { Signer } from '../../src/jose/signer.ts';
import { verifyCompact, verifyDetached } from '../../src/jose/verify.ts';
import { signReceipt, verifyReceipt } from '../../src/protocol/receipt.ts';
import { PROTOCOL } from '../../src/protocol/wire.ts';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signer: Signer = {
  alg: 'ES256',
  kid: 'recipient-key-1',
  sign: async (data) => sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' }),
  signDigest: () => Promise.reject(new Error('not used')),
};
const key = async () => publicKey;
const sent = { iss: 'recipient.example', aud: 'us.example', delivery: 'd-1', digest: 'sha256:abc' };

async function refusal(p: Promise<unknown>): Promise<GatewayError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  return err as GatewayError;
}

describe('precise JOSE and receipt refusal codes (each still a 400)', () => {
  it('a JWS whose header cannot be decoded, or of another typ, is JWS_MALFORMED', async () => {
    const bad = await refusal(verifyCompact('not-a-jws', key));
    expect([bad.code, bad.status]).toEqual(['JWS_MALFORMED', 400]);
    const jws = await signJson(signer, { a: 1 }, { typ: 'other+jwt' });
    const typ = await refusal(verifyCompact(jws, key, { typ: PROTOCOL.receiptTyp }));
    expect([typ.code, typ.status]).toEqual(['JWS_MALFORMED', 400]);
    const detached = await refusal(verifyDetached(jws, Buffer.from('x'), key));
    expect([detached.code, detached.status]).toEqual(['JWS_MALFORMED', 400]);
  });

  it('a signature that does not verify is JWS_SIGNATURE_INVALID', async () => {
    const jws = await signJson(signer, { a: 1 });
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    const err = await refusal(verifyCompact(jws, async () => other));
    expect([err.code, err.status]).toEqual(['JWS_SIGNATURE_INVALID', 400]);
  });

  it('a receipt for other bytes than were sent is RECEIPT_MISMATCH', async () => {
    const { receipt } = await signReceipt(signer, { ...sent, digest: 'sha256:other' });
    const err = await refusal(verifyReceipt(receipt, key, sent));
    expect([err.code, err.status, err.expression]).toEqual(['RECEIPT_MISMATCH', 400, ['receipt.digest']]);
  });

  it('a signed receipt that does not accept is RECEIPT_INVALID', async () => {
    const receipt = await signJson(
      signer,
      { ...sent, iat: 1, jti: 'r-1', status: 'rejected' },
      { typ: PROTOCOL.receiptTyp },
    );
    const err = await refusal(verifyReceipt(receipt, key, sent));
    expect([err.code, err.status]).toEqual(['RECEIPT_INVALID', 400]);
  });

  it('a matching receipt verifies', async () => {
    const { receipt, claims } = await signReceipt(signer, sent);
    expect(await verifyReceipt(receipt, key, sent)).toEqual(claims);
  });

  it('a receipt that names a member twice, in its header or its claims, is refused', async () => {
    const signRaw = (headerText: string, claimsText: string) => {
      const input = `${Buffer.from(headerText).toString('base64url')}.${Buffer.from(claimsText).toString('base64url')}`;
      const sig = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
      return `${input}.${sig.toString('base64url')}`;
    };
    const claims = { ...sent, iat: 1, jti: 'r-1', status: 'accepted' };
    const header = `{"alg":"ES256","kid":"${signer.kid}","typ":"${PROTOCOL.receiptTyp}"`;
    // The last "status" would be read as accepted; the first says rejected.
    const twice = JSON.stringify(claims).replace('"status":', '"status":"rejected","status":');
    const inClaims = await refusal(verifyReceipt(signRaw(`${header}}`, twice), key, sent));
    expect([inClaims.code, inClaims.status]).toEqual(['RECEIPT_INVALID', 400]);
    const inHeader = await refusal(
      verifyReceipt(signRaw(`${header},"\\u0074yp":"other"}`, JSON.stringify(claims)), key, sent),
    );
    expect([inHeader.code, inHeader.status]).toEqual(['JWS_MALFORMED', 400]);
    // The same texts without the repetition verify: only the duplicate is refused.
    expect(await verifyReceipt(signRaw(`${header}}`, JSON.stringify(claims)), key, sent)).toEqual(claims);
  });
});

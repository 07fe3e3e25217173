import { createHash, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  digestOf,
  receiptEntryProblem,
  verifyCheckpointNote,
  verifyEs256Jws,
} from '../../src/audit/verifier/exchange.ts';
import { checkpointBody, derFromRaw, formatSignedNote, noteKeyId, utf8 } from '../../src/audit/verifier/note.ts';
import { nodeVerifyDeps } from '../../src/audit/verify-node.ts';
import { canonicalJson } from '../../src/audit/canonical.ts';
import { checkEvidenceRequest, EVIDENCE, evidenceUrl, receiptDigest } from '../../src/protocol/evidence.ts';

const keyPair = () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = {
    ...(publicKey.export({ format: 'jwk' }) as { kty: string; crv: string; x: string; y: string }),
    kid: 'k1',
  };
  return { privateKey, jwk };
};
const key = keyPair();

const b64u = (s: string | Buffer) => Buffer.from(s).toString('base64url');
function jws(header: object, claims: object, k = key): string {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
  return `${input}.${b64u(sign('sha256', Buffer.from(input), { key: k.privateKey, dsaEncoding: 'ieee-p1363' }))}`;
}

describe('the receipt entry rule (PROTOCOL 12.1)', () => {
  const receipt = 'a.b.c';
  const want = { index: 7, receiptId: randomUUID(), receiptDigest: receiptDigest(receipt), delivery: randomUUID() };
  const entry = (over: Record<string, unknown> = {}) =>
    canonicalJson({
      type: 'inbox.accepted',
      index: 7,
      outcome: 'success',
      entity: [
        { type: 'delivery', id: want.delivery },
        { type: 'receipt', id: want.receiptId, digest: want.receiptDigest },
      ],
      ...over,
    });

  it('holds for the entry that names the receipt with its digest and the delivery', () => {
    expect(receiptEntryProblem(entry(), want)).toBeUndefined();
    // The digest is the envelope digest form over the receipt JWS bytes, the same in the pure verifier.
    expect(digestOf(receipt, nodeVerifyDeps.sha256)).toBe(want.receiptDigest);
  });

  it('names what is wrong otherwise', () => {
    expect(receiptEntryProblem(entry({ index: 8 }), want)).toMatch(/not leaf 7/);
    expect(receiptEntryProblem(entry({ type: 'inbox.duplicate' }), want)).toMatch(/not inbox.accepted/);
    expect(receiptEntryProblem(entry(), { ...want, receiptDigest: receiptDigest('other') })).toMatch(
      /receipt .* digest/,
    );
    expect(receiptEntryProblem(entry(), { ...want, delivery: randomUUID() })).toMatch(/delivery/);
    expect(receiptEntryProblem('{', want)).toMatch(/not JSON/);
  });
});

describe('the evidence request claims (PROTOCOL 12.3)', () => {
  const org = 'https://gw-b.test';
  const now = Date.now();
  const claims = (over: Record<string, unknown> = {}) => ({
    iss: 'https://gw-a.test',
    aud: org,
    iat: Math.floor(now / 1000),
    jti: randomUUID(),
    size: 10,
    receipts: [],
    ...over,
  });
  const check = (over: Record<string, unknown>) => () =>
    checkEvidenceRequest(claims(over), { org, clockSkewMs: 300_000, now });

  it('takes up to 100 receipt ids, once each, in lower case', () => {
    const id = randomUUID();
    expect(
      checkEvidenceRequest(claims({ receipts: [id.toUpperCase(), id] }), { org, clockSkewMs: 300_000, now }),
    ).toEqual({
      size: 10,
      receipts: [id],
    });
  });

  it('refuses another audience, a time outside the skew either way, a bad size and bad receipt lists', () => {
    expect(check({ aud: 'https://elsewhere.test' })).toThrow(expect.objectContaining({ code: 'WRONG_AUDIENCE' }));
    expect(check({ iat: Math.floor(now / 1000) - 301 })).toThrow(
      expect.objectContaining({ code: 'IAT_OUT_OF_WINDOW' }),
    );
    expect(check({ iat: Math.floor(now / 1000) + 301 })).toThrow(
      expect.objectContaining({ code: 'IAT_OUT_OF_WINDOW' }),
    );
    expect(check({ size: -1 })).toThrow(expect.objectContaining({ code: 'CLAIMS_INVALID' }));
    expect(check({ receipts: ['not-a-uuid'] })).toThrow(expect.objectContaining({ code: 'CLAIMS_INVALID' }));
    expect(check({ receipts: Array.from({ length: EVIDENCE.maxReceipts + 1 }, () => randomUUID()) })).toThrow(
      expect.objectContaining({ code: 'CLAIMS_INVALID' }),
    );
  });

  it("is posted to the partner's inbox URL with /evidence appended", () => {
    expect(evidenceUrl('https://gw-b.test/inbox')).toBe('https://gw-b.test/inbox/evidence');
    expect(evidenceUrl('https://gw-b.test/x/inbox/')).toBe('https://gw-b.test/x/inbox/evidence');
  });
});

describe('the pure verifiers of the proof bundle', () => {
  it('verify an ES256 JWS with the named key and typ, and refuse an altered one', async () => {
    const good = jws({ alg: 'ES256', kid: 'k1', typ: 'audit-keys+jwt' }, { iss: 'x' });
    await expect(verifyEs256Jws(good, key.jwk, 'audit-keys+jwt', nodeVerifyDeps)).resolves.toEqual({ iss: 'x' });
    const [h, , s] = good.split('.');
    const altered = `${h}.${b64u(JSON.stringify({ iss: 'y' }))}.${s}`;
    await expect(verifyEs256Jws(altered, key.jwk, 'audit-keys+jwt', nodeVerifyDeps)).rejects.toThrow(/does not verify/);
    await expect(verifyEs256Jws(good, key.jwk, 'exchange-receipt+jwt', nodeVerifyDeps)).rejects.toThrow(/typ/);
    await expect(verifyEs256Jws(good, { ...key.jwk, kid: 'k2' }, 'audit-keys+jwt', nodeVerifyDeps)).rejects.toThrow(
      /names key k1/,
    );
    await expect(
      verifyEs256Jws(good, { ...keyPair().jwk, kid: 'k1' }, 'audit-keys+jwt', nodeVerifyDeps),
    ).rejects.toThrow(/does not verify/);
  });

  it('verify a C2SP checkpoint by a listed audit key under the origin, ignoring unknown signers', async () => {
    const origin = 'gw-b.test/audit';
    const body = checkpointBody(origin, 5, createHash('sha256').update('root').digest());
    const signature = (k: ReturnType<typeof keyPair>) =>
      derFromRaw(sign('sha256', utf8(body), { key: k.privateKey, dsaEncoding: 'ieee-p1363' }));
    const stranger = keyPair();
    const note = formatSignedNote(body, [
      { name: 'witness.test', keyId: noteKeyId(stranger.jwk, nodeVerifyDeps.sha256), signature: signature(stranger) },
      { name: origin, keyId: noteKeyId(key.jwk, nodeVerifyDeps.sha256), signature: signature(key) },
    ]);
    await expect(verifyCheckpointNote(note, origin, [key.jwk], nodeVerifyDeps)).resolves.toMatchObject({ size: 5 });
    await expect(verifyCheckpointNote(note, origin, [stranger.jwk], nodeVerifyDeps)).rejects.toThrow(/no signature/);
    await expect(verifyCheckpointNote(note, 'other.test/audit', [key.jwk], nodeVerifyDeps)).rejects.toThrow(
      /no signature/,
    );
    const forged = formatSignedNote(body, [
      { name: origin, keyId: noteKeyId(key.jwk, nodeVerifyDeps.sha256), signature: signature(stranger) },
    ]);
    await expect(verifyCheckpointNote(forged, origin, [key.jwk], nodeVerifyDeps)).rejects.toThrow(/does not verify/);
  });
});

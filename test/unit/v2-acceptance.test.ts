import { describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { envelopeVersion } from '../../src/protocol/v2-negotiation.ts';
import {
  publishesPqSignatures,
  refuseDowngrade,
  requireReceiptForm,
  requireSignatureForm,
} from '../../src/protocol/v2-acceptance.ts';
import { signingKidOf, scopeOfSignedItem } from '../../src/directory/signing-keys.ts';
import { verifyEs256Jws } from '../../src/audit/verifier/exchange.ts';
import { nodeVerifyDeps } from '../../src/audit/verify-node.ts';
import { createPqPeer } from '../helpers/pq-peer.ts';

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
const peer = createPqPeer();
const claims = JSON.stringify({ iss: 'b', aud: 'a', iat: 1795000000, jti: randomUUID(), status: 'accepted' });
const dual = peer.signDual(claims, 'exchange-receipt+jwt');
const compact = peer.signCompact(claims, 'exchange-receipt+jwt');
const ours = [peer.jwks.ecSig, peer.jwks.ecEnc, peer.jwks.pqSig, peer.jwks.kemEnc];
const codeOf = (f: () => void) => {
  try {
    f();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
};

describe('protocol v2 acceptance rules (src/protocol/v2-acceptance.ts)', () => {
  it('reads the version from the envelope header: the hybrid alg is v2, anything else (or unreadable) v1', () => {
    expect(envelopeVersion(`${b64({ alg: 'x-ECDH-ES+ML-KEM-768' })}..iv.ct.tag`)).toBe(2);
    expect(envelopeVersion(`${b64({ alg: 'ECDH-ES' })}..iv.ct.tag`)).toBe(1);
    expect(envelopeVersion('not an envelope')).toBe(1);
    expect(envelopeVersion('%%%.x')).toBe(1);
  });

  it('refuses the mixed forms, and leaves JSON that is no JWS to the v1 verifier', () => {
    expect(codeOf(() => requireSignatureForm(2, dual, 'envelope'))).toBeUndefined();
    expect(codeOf(() => requireSignatureForm(1, compact, 'envelope'))).toBeUndefined();
    expect(codeOf(() => requireSignatureForm(2, compact, 'envelope'))).toBe('PROTOCOL_MIXED');
    expect(codeOf(() => requireSignatureForm(1, dual, 'envelope'))).toBe('PROTOCOL_MIXED');
    expect(codeOf(() => requireSignatureForm(1, claims, 'envelope'))).toBeUndefined();
  });

  it('refuses v1 only when the sender signs with ML-DSA-65 and we publish both post-quantum keys', () => {
    const pqSender = { id: 'p', keys: ours };
    const v1Sender = { id: 'p', keys: [peer.jwks.ecSig, peer.jwks.ecEnc] };
    expect(publishesPqSignatures(pqSender.keys)).toBe(true);
    expect(publishesPqSignatures([{ ...peer.jwks.pqSig, use: 'enc' }])).toBe(false);
    expect(codeOf(() => refuseDowngrade(1, pqSender, ours))).toBe('PROTOCOL_DOWNGRADE');
    expect(codeOf(() => refuseDowngrade(2, pqSender, ours))).toBeUndefined();
    expect(codeOf(() => refuseDowngrade(1, v1Sender, ours))).toBeUndefined();
    expect(codeOf(() => refuseDowngrade(1, pqSender, [peer.jwks.ecSig, peer.jwks.ecEnc]))).toBeUndefined();
  });

  it('a receipt must be of its delivery’s version: a compact one for v2 is a downgrade', () => {
    expect(codeOf(() => requireReceiptForm(2, dual))).toBeUndefined();
    expect(codeOf(() => requireReceiptForm(1, compact))).toBeUndefined();
    expect(codeOf(() => requireReceiptForm(2, compact))).toBe('PROTOCOL_DOWNGRADE');
    expect(codeOf(() => requireReceiptForm(1, dual))).toBe('PROTOCOL_MIXED');
  });
});

describe('reading a dual-signed receipt where compact ones were read', () => {
  it('the ES256 kid and the signing time, before verification', () => {
    expect(signingKidOf(dual)).toBe('peer-sig');
    expect(signingKidOf(compact)).toBe('peer-sig');
    expect(signingKidOf('{"payload":1}')).toBeUndefined();
    expect(scopeOfSignedItem(dual)).toEqual({ signedAt: new Date(1795000000 * 1000) });
  });

  it('the offline verifier checks the ES256 signature of a dual-signed receipt, and refuses it altered', async () => {
    const key = { kty: 'EC', crv: 'P-256', x: peer.jwks.ecSig.x, y: peer.jwks.ecSig.y, kid: 'peer-sig' } as const;
    expect(await verifyEs256Jws(dual, key, 'exchange-receipt+jwt', nodeVerifyDeps)).toMatchObject({ iss: 'b' });
    const doc = JSON.parse(dual) as { payload: string; signatures: Array<{ protected: string; signature: string }> };
    const altered = JSON.stringify({
      ...doc,
      payload: Buffer.from(claims.replace('"b"', '"c"')).toString('base64url'),
    });
    await expect(verifyEs256Jws(altered, key, 'exchange-receipt+jwt', nodeVerifyDeps)).rejects.toThrow(
      /does not verify/,
    );
  });
});

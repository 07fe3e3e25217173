import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { createTestToken, type TestToken } from '../helpers/hsm.ts';
import { Hsm, type HsmKeyInfo } from '../../hsm/hsm.ts';
import { acquireModule, pkcs11js, releaseModule } from '../../hsm/module.ts';
import { findSlotByTokenLabel } from '../../hsm/token.ts';
import { findKeyObject } from '../../hsm/key-store.ts';
import { ckrName } from '../../hsm/errors.ts';
import { hsmSigner } from '../../src/jose/signer.ts';

const LOAD = 500;
const digestOf = (i: number) => createHash('sha256').update(`message ${i}`).digest();

/** Run every promise to completion; count results and errors by code (a crash kills the worker and fails the file). */
async function settle(promises: Array<Promise<Uint8Array>>) {
  const results = await Promise.allSettled(promises);
  const errors: Record<string, number> = {};
  const signatures: Array<Uint8Array | undefined> = [];
  for (const r of results) {
    if (r.status === 'fulfilled') signatures.push(r.value);
    else {
      const code = ckrName(r.reason) ?? (r.reason as { code?: string }).code ?? String(r.reason);
      errors[code] = (errors[code] ?? 0) + 1;
      signatures.push(undefined);
    }
  }
  return { signatures, errors };
}

describe(`${LOAD} concurrent signs`, () => {
  let token: TestToken;
  let hsm: Hsm;
  let key: HsmKeyInfo;
  let publicKey: KeyObject;
  beforeAll(async () => {
    token = createTestToken();
    hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 4 });
    key = await hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'sign', 'concurrency');
    publicKey = createPublicKey({ key: key.publicJwk as never, format: 'jwk' });
  });
  afterAll(() => hsm?.close());

  it('control: the same load on ONE raw session without the pool fails with CKR_OPERATION_ACTIVE', async () => {
    const p11 = acquireModule(token.library);
    const session = p11.C_OpenSession(
      findSlotByTokenLabel(p11, token.label)!,
      pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION,
    );
    try {
      const handle = findKeyObject(p11, session, Buffer.from(key.id, 'hex'), pkcs11js.CKO_PRIVATE_KEY)!;
      const { signatures, errors } = await settle(
        Array.from({ length: LOAD }, async (_, i) => {
          p11.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, handle);
          return p11.C_SignAsync(session, digestOf(i), Buffer.alloc(64));
        }),
      );
      expect(errors.CKR_OPERATION_ACTIVE).toBeGreaterThan(0);
      expect(signatures.filter(Boolean).length).toBeLessThan(LOAD);
    } finally {
      p11.C_CloseSession(session);
      releaseModule(token.library);
    }
  });

  it('through the pool (4 sessions, via hsmSigner): every one succeeds and verifies', async () => {
    const signer = hsmSigner(hsm, key.id, 'ES256', 'kid');
    const { signatures, errors } = await settle(Array.from({ length: LOAD }, (_, i) => signer.signDigest(digestOf(i))));
    expect(errors).toEqual({});
    // Each signature is over its own digest: verify against the message it came from.
    const verified = signatures.filter(
      (sig, i) =>
        sig && verify('sha256', Buffer.from(`message ${i}`), { key: publicKey, dsaEncoding: 'ieee-p1363' }, sig),
    ).length;
    expect(verified).toBe(LOAD);
  });

  it('through a pool of ONE session, mixed with pings and key lookups: all succeed (callers queue)', async () => {
    const single = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 1 });
    try {
      const work: Array<Promise<Uint8Array>> = [];
      for (let i = 0; i < LOAD; i++) {
        work.push(single.signDigest(key.id, 'ES256', digestOf(i)));
        if (i % 50 === 0)
          work.push(
            single.ping().then(() => Buffer.alloc(0)),
            single.describeKey(key.id).then(() => Buffer.alloc(0)),
          );
      }
      const { signatures, errors } = await settle(work);
      expect(errors).toEqual({});
      expect(signatures.filter((s) => s && s.length === 64).length).toBe(LOAD);
    } finally {
      single.close();
    }
  });
});

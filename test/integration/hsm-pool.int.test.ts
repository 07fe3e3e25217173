import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createTestToken, type TestToken } from '../helpers/hsm.ts';
import { Hsm, HsmError, type HsmKeyInfo } from '../../hsm/hsm.ts';
import { acquireModule, pkcs11js, releaseModule } from '../../hsm/module.ts';
import { findSlotByTokenLabel } from '../../hsm/token.ts';
import { findKeyObject } from '../../hsm/key-store.ts';

const digest = createHash('sha256').update('pool').digest();

describe('HSM session pool and key store', () => {
  let token: TestToken;
  let hsm: Hsm;
  let key: HsmKeyInfo;
  beforeAll(async () => {
    token = createTestToken();
    hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 3 });
    key = await hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'sign', 'pool-key');
  });
  afterAll(() => hsm?.close());

  it('fails fast at open with stable codes', async () => {
    // A token nobody in this process is logged in to: PKCS#11 login state is per
    // process and token, so a second login there would answer ALREADY_LOGGED_IN.
    const fresh = createTestToken();
    const wrongPin = (() => {
      try {
        return Hsm.open({ library: fresh.library, tokenLabel: fresh.label, pin: 'not-the-pin', sessions: 3 });
      } catch (err) {
        return err;
      }
    })();
    expect(wrongPin).toMatchObject({ name: 'HsmError', code: 'HSM_LOGIN_FAILED', ckr: 'CKR_PIN_INCORRECT' });
    expect(() =>
      Hsm.open({ library: token.library, tokenLabel: 'no-such-token', pin: token.pin, sessions: 1 }),
    ).toThrow(expect.objectContaining({ code: 'HSM_TOKEN_NOT_FOUND' }));
    expect(() =>
      Hsm.open({ library: '/nonexistent/libpkcs11.so', tokenLabel: token.label, pin: token.pin, sessions: 1 }),
    ).toThrow(expect.objectContaining({ code: 'HSM_UNAVAILABLE' }));
    // The right PIN still works after the failure (nothing was left half-open).
    Hsm.open({ library: fresh.library, tokenLabel: fresh.label, pin: fresh.pin, sessions: 3 }).close();
  });

  it('finds keys by CKA_ID, lists them, and reports a missing key as HSM_KEY_NOT_FOUND', async () => {
    expect((await hsm.describeKey(key.id)).label).toBe('pool-key');
    expect((await hsm.listKeys()).map((k) => k.id)).toContain(key.id);
    expect(await hsm.hasKey(key.id)).toBe(true);
    await expect(hsm.signDigest('00'.repeat(16), 'ES256', digest)).rejects.toMatchObject({ code: 'HSM_KEY_NOT_FOUND' });
    await expect(hsm.signDigest(key.id, 'ES256', digest.subarray(0, 20))).rejects.toMatchObject({
      code: 'HSM_OPERATION_FAILED',
    });
  });

  it('a key destroyed by another instance is HSM_KEY_NOT_FOUND, not a stale-handle failure', async () => {
    const doomed = await hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'sign', 'doomed');
    await hsm.signDigest(doomed.id, 'ES256', digest); // caches the handle
    const other = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 1 });
    try {
      await other.destroyKey(doomed.id);
    } finally {
      other.close();
    }
    const err = await hsm.signDigest(doomed.id, 'ES256', digest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HsmError);
    expect(err).toMatchObject({ code: 'HSM_KEY_NOT_FOUND' });
  });

  it('heals when every session is closed under it (C_CloseAllSessions): callers see no error', async () => {
    await Promise.all(Array.from({ length: 10 }, () => hsm.signDigest(key.id, 'ES256', digest))); // all 3 sessions open
    const p11 = acquireModule(token.library);
    try {
      p11.C_CloseAllSessions(findSlotByTokenLabel(p11, token.label)!);
    } finally {
      releaseModule(token.library);
    }
    const results = await Promise.allSettled(Array.from({ length: 30 }, () => hsm.signDigest(key.id, 'ES256', digest)));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    await hsm.ping();
    expect(hsm.sessions).toBe(3);
  });

  it('heals when the shared module is finalised under it (C_Finalize, like a device reset): callers see no error', async () => {
    await Promise.all(Array.from({ length: 10 }, () => hsm.signDigest(key.id, 'ES256', digest)));
    const p11 = acquireModule(token.library);
    try {
      p11.C_Finalize();
    } finally {
      releaseModule(token.library);
    }
    const results = await Promise.allSettled(Array.from({ length: 30 }, () => hsm.signDigest(key.id, 'ES256', digest)));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect((await hsm.describeKey(key.id)).id).toBe(key.id);
  });

  it('replaces a session left with an operation active, instead of failing on it forever', async () => {
    const one = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 1 });
    try {
      // A buggy caller starts a signature and never finishes it.
      await one.withSession((session, p11) => {
        const handle = findKeyObject(p11, session, Buffer.from(key.id, 'hex'), pkcs11js.CKO_PRIVATE_KEY)!;
        p11.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, handle);
      });
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, () => one.signDigest(key.id, 'ES256', digest)),
      );
      expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    } finally {
      one.close();
    }
  });

  it('a closed Hsm refuses work with HSM_UNAVAILABLE', async () => {
    const short = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 1 });
    short.close();
    await expect(short.signDigest(key.id, 'ES256', digest)).rejects.toMatchObject({ code: 'HSM_UNAVAILABLE' });
  });
});

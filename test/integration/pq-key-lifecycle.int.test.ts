import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPublicKey, encapsulate, decapsulate } from 'node:crypto';
import type pg from 'pg';
import { calculateJwkThumbprint, flattenedVerify, importJWK } from 'jose';
import { Hsm } from '../../hsm/hsm.ts';
import { createPool } from '../../src/db/pool.ts';
import { ensureGatewayKeys } from '../../src/keys/bootstrap.ts';
import { keyHistory } from '../../src/keys/history.ts';
import { openKeyring, type Keyring } from '../../src/keys/keyring.ts';
import type { RotationPolicy } from '../../src/keys/policy.ts';
import { rotateUse } from '../../src/keys/rotation.ts';
import type { StepDeps } from '../../src/keys/rotation-steps.ts';
import { listKeys } from '../../src/keys/store.ts';
import { signDual } from '../../src/jose/pq/dual-jws.ts';
import { createTestDatabase } from '../helpers/db.ts';
import { createTestToken } from '../helpers/hsm.ts';

const S = 1_000;
const policy: RotationPolicy = { rotationMs: 100 * S, prepublishMs: 10 * S, retentionMs: 20 * S };
const quiet = { warn: () => undefined };

describe('the gateway post-quantum keys in the key lifecycle (wrapped seeds, JWKS, rotation, destruction)', () => {
  let pool: pg.Pool;
  let hsm: Hsm;
  let keyring: Keyring;
  const logged: object[] = [];
  beforeAll(async () => {
    pool = createPool(await createTestDatabase(), quiet, 5);
    const token = createTestToken();
    hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 2 });
    keyring = await openKeyring(pool, hsm, { info: (detail) => logged.push(detail) });
  });
  afterAll(async () => {
    hsm?.close();
    await pool?.end();
  });

  it('bootstrap makes one active ML-DSA-65 and one ML-KEM-768 key, each seed wrapped by its own token AES key', async () => {
    const keys = await listKeys(pool);
    for (const [use, alg] of [
      ['pq-sig', 'ML-DSA-65'],
      ['pq-enc', 'ML-KEM-768'],
    ] as const) {
      const [k] = keys.filter((r) => r.use === use);
      expect(keys.filter((r) => r.use === use)).toHaveLength(1);
      expect(k).toMatchObject({ use, alg, state: 'active', public_jwk: { kty: 'AKP', alg } });
      // RFC 5649 adds 8 bytes to the 32-byte (ML-DSA ξ) or 64-byte (ML-KEM d ‖ z) seed.
      expect(k!.wrapped_seed).toHaveLength(alg === 'ML-DSA-65' ? 40 : 72);
      expect(await hsm.hasKey(k!.hsm_id)).toBe(true);
    }
    // SoftHSM offers no PKCS#11 3.2 mechanisms: the start says the keys are software keys, wrapped.
    expect(logged).toContainEqual({
      pq: { keys: 'software, wrapped by the HSM', tokenOffersPqMechanisms: false },
    });
  });

  it('publishes RFC 9964 AKP JWKs after every EC key, with RFC 7638 thumbprints as kids', async () => {
    const { keys } = keyring.jwks();
    const firstAkp = keys.findIndex((k) => k.kty === 'AKP');
    expect(firstAkp).toBeGreaterThan(0);
    expect(keys.slice(firstAkp).every((k) => k.kty === 'AKP')).toBe(true);
    const akp = keys.slice(firstAkp) as Array<{ kty: string; alg: string; pub: string; kid: string; use: string }>;
    expect(akp.map((k) => [k.alg, k.use]).sort()).toEqual([
      ['ML-DSA-65', 'sig'],
      ['ML-KEM-768', 'enc'],
    ]);
    for (const k of akp) {
      expect(Object.keys(k).sort()).toEqual(['alg', 'kid', 'kty', 'pub', 'use']);
      // panva/jose computes the RFC 7638 thumbprint of AKP keys over alg, kty and pub (RFC 9964 §4).
      expect(await calculateJwkThumbprint(k as never)).toBe(k.kid);
    }
  });

  it('the unwrapped keys work: a dual JWS verifies with panva/jose, and an encapsulation decapsulates', async () => {
    const sig = keyring.jwks().keys.find((k) => k.kty === 'AKP' && k.use === 'sig')!;
    const kem = keyring.jwks().keys.find((k) => k.kty === 'AKP' && k.use === 'enc')!;
    const jws = JSON.parse(await signDual(keyring.signer(), await keyring.pqSigner(), 'probe', { typ: 'x' })) as {
      payload: string;
      signatures: Array<{ protected: string; signature: string }>;
    };
    const second = jws.signatures[1]!;
    const verified = await flattenedVerify(
      { payload: jws.payload, ...second },
      await importJWK(sig as never, 'ML-DSA-65'),
    );
    expect(Buffer.from(verified.payload).toString()).toBe('probe');
    const { sharedKey, ciphertext } = encapsulate(createPublicKey({ key: kem as never, format: 'jwk' }));
    expect(decapsulate((await keyring.kemKey(kem.kid))!, ciphertext).equals(sharedKey)).toBe(true);
    expect(await keyring.kemKey(sig.kid)).toBeUndefined();
  });

  it('rotates and destroys like the HSM keys: the retired ML-KEM key still opens until destroyed, then its token key is gone', async () => {
    let now = Date.now();
    const deps: StepDeps = { pool, hsm, actor: { type: 'gateway', id: 'test' }, clock: () => new Date(now) };
    const old = (await listKeys(pool)).find((k) => k.use === 'pq-enc' && k.state === 'active')!;
    await rotateUse(deps, 'pq-enc', policy, { request: { now: true } });
    await keyring.reload();
    const rows = await listKeys(pool);
    const next = rows.find((k) => k.use === 'pq-enc' && k.state === 'active')!;
    expect(next.kid).not.toBe(old.kid);
    expect(rows.find((k) => k.kid === old.kid)!.state).toBe('deactivated');
    const published = keyring.jwks().keys.filter((k) => k.kty === 'AKP' && k.use === 'enc');
    expect(published.map((k) => k.kid)).toEqual([next.kid, old.kid]);
    expect(await keyring.kemKey(old.kid)).toBeDefined();

    now += policy.retentionMs + S;
    const run = await rotateUse(deps, 'pq-enc', policy);
    expect(run.steps).toContainEqual({ kind: 'destroy', use: 'pq-enc', kid: old.kid });
    await keyring.reload();
    expect(await hsm.hasKey(old.hsm_id)).toBe(false);
    expect(await keyring.kemKey(old.kid)).toBeUndefined();
    expect(keyring.jwks().keys.map((k) => k.kid)).not.toContain(old.kid);
    // The history keeps the public key of every post-quantum key, and never its wrapped seed.
    const history = await keyHistory(pool);
    const entry = history.find((h) => h.kid === old.kid)!;
    expect(entry).toMatchObject({ use: 'pq-enc', alg: 'ML-KEM-768', state: 'destroyed' });
    expect(entry.public_jwk).toMatchObject({
      kty: 'AKP',
      use: 'enc',
      pub: old.public_jwk.kty === 'AKP' && old.public_jwk.pub,
    });
    expect(JSON.stringify(history)).not.toContain(old.wrapped_seed!.toString('base64'));
    const audit = await pool.query<{ type: string }>(
      "SELECT type FROM audit_log WHERE type LIKE 'key.%' AND strpos(entry, $1) > 0 ORDER BY idx",
      [old.kid],
    );
    expect(audit.rows.map((r) => r.type)).toEqual([
      'key.generated',
      'key.published',
      'key.activated',
      'key.deactivated',
      'key.destroyed',
    ]);
  });

  it('a second start finds every post-quantum key on the token, and refuses when a wrapping key is missing', async () => {
    expect(await ensureGatewayKeys(pool, hsm)).toEqual([]);
    const sig = (await listKeys(pool)).find((k) => k.use === 'pq-sig' && k.state === 'active')!;
    await hsm.destroyKey(sig.hsm_id);
    await expect(ensureGatewayKeys(pool, hsm)).rejects.toThrow(/not on the HSM token/);
  });

  it('a seed that does not unwrap to the recorded public key fails the self-test', async () => {
    const row = (await listKeys(pool)).find((k) => k.use === 'pq-enc' && k.state === 'active')!;
    const other = (await listKeys(pool)).find((k) => k.use === 'pq-enc' && k.kid !== row.kid)!;
    await pool.query('UPDATE gateway_keys SET public_jwk = $2 WHERE kid = $1', [
      row.kid,
      JSON.stringify(other.public_jwk),
    ]);
    const fresh = new (keyring.constructor as typeof Keyring)(pool, hsm);
    await fresh.reload();
    await expect(fresh.kemKey(row.kid)).rejects.toThrow(/not this key's/);
  });
});

import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/db/batcher.ts';
import { classifyStatus, nextDelayMs, parseRetryAfter } from '../../src/net/retry-policy.ts';
import { freshnessMs } from '../../src/directory/cache-control.ts';
import { assertDeliverPayload } from '../../src/worker/tasks/deliver.ts';
import { checkJwks, selectEncryptionKey, selectVerificationKey } from '../../src/directory/jwks.ts';

describe('retry policy', () => {
  it('classifies answers', () => {
    expect([200, 202, 408, 429, 500, 503, 400, 401, 404, 409, 302].map(classifyStatus)).toEqual([
      'ok',
      'ok',
      'transient',
      'transient',
      'transient',
      'transient',
      'permanent',
      'permanent',
      'permanent',
      'permanent',
      'permanent',
    ]);
  });
  it('backs off exponentially with jitter, capped, and honours Retry-After', () => {
    expect(nextDelayMs(1, 1000, 60_000, undefined, () => 0)).toBe(500);
    expect(nextDelayMs(1, 1000, 60_000, undefined, () => 1)).toBe(1000);
    expect(nextDelayMs(4, 1000, 60_000, undefined, () => 1)).toBe(8000);
    expect(nextDelayMs(20, 1000, 60_000, undefined, () => 1)).toBe(60_000);
    expect(nextDelayMs(1, 1000, 60_000, 30_000, () => 0)).toBe(30_000);
  });
  it('parses Retry-After seconds and HTTP-dates', () => {
    expect(parseRetryAfter('120')).toBe(120_000);
    expect(parseRetryAfter(new Date(10_000 + 5_000).toUTCString(), 10_000)).toBeLessThanOrEqual(5_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});

describe('GroupCommit', () => {
  it('batches concurrent submissions into one run and answers each after it', async () => {
    const runs: number[][] = [];
    const gc = new GroupCommit<number, number>(
      async (items) => {
        runs.push(items);
        await new Promise((r) => setTimeout(r, 10));
        return items.map((i) => (i === 3 ? new Error('three') : i * 2));
      },
      { maxItems: 100, maxWeight: 1e9, weight: () => 1, maxInFlight: 1 },
    );
    const results = await Promise.allSettled([1, 2, 3, 4].map((i) => gc.submit(i)));
    expect(runs).toEqual([[1, 2, 3, 4]]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual([
      2,
      4,
      'three',
      8,
    ]);
  });
  it('splits by size and isolates a batch failure to the item that causes it', async () => {
    const runs: number[][] = [];
    const gc = new GroupCommit<number, number>(
      async (items) => {
        runs.push(items);
        if (items.includes(7)) throw new Error('poison');
        return items;
      },
      { maxItems: 2, maxWeight: 1e9, weight: () => 1, maxInFlight: 1 },
    );
    const results = await Promise.allSettled([5, 7, 9].map((i) => gc.submit(i)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(runs[0]).toEqual([5, 7]);
    await gc.drained();
  });
});

describe('directory key checks', () => {
  const ec = {
    kty: 'EC',
    crv: 'P-256',
    x: 'DPq24azwBToeBRZxjEaiHfbWu-JtOWBI6LT93Y7efFs',
    y: 'dHdF_Wkb-SaZ3AYsiM5joqtjoFjF53FmQ7HAN-aqNl8',
  };
  it('selects the first enc key and refuses weak, invalid or mismatched ones', () => {
    expect(
      selectEncryptionKey(
        {
          keys: [
            { ...ec, kid: 'a', use: 'sig' },
            { ...ec, kid: 'b', use: 'enc', alg: 'ECDH-ES' },
            { ...ec, kid: 'c', use: 'enc' },
          ],
        },
        'p',
      ).kid,
    ).toBe('b');
    expect(() => selectEncryptionKey({ keys: [{ ...ec, kid: 'a', use: 'sig' }] }, 'p')).toThrow(/no encryption key/);
    expect(() => selectEncryptionKey({ keys: [{ kty: 'RSA', kid: 'r', use: 'enc' }] }, 'p')).toThrow(/only EC keys/);
    expect(() => selectEncryptionKey({ keys: [{ ...ec, crv: 'P-521', kid: 'r', use: 'enc' }] }, 'p')).toThrow(
      /P-256 and P-384/,
    );
    expect(() => selectEncryptionKey({ keys: [{ ...ec, kid: 'r', use: 'enc', alg: 'RSA-OAEP' }] }, 'p')).toThrow(
      /alg "RSA-OAEP"/,
    );
    expect(() => selectEncryptionKey({ keys: [{ ...ec, crv: 'P-384', kid: 'r', use: 'enc' }] }, 'p')).toThrow(
      /invalid "x" coordinate/,
    );
    expect(() => selectEncryptionKey({ keys: [{ ...ec, y: ec.x, kid: 'r', use: 'enc' }] }, 'p')).toThrow(/not a point/);
    expect(() => selectEncryptionKey({ keys: [{ ...ec, use: 'enc' }] }, 'p')).toThrow(/no kid/);
    expect(() => checkJwks({ keys: [{ ...ec, d: 'secret' }] }, 20, 'jwks')).toThrow(/private key material/);
    const akp = { kty: 'AKP', alg: 'ML-KEM-768', pub: 'cHVi', kid: 'kem', use: 'enc' };
    expect(() => checkJwks({ keys: [{ ...akp, priv: 'c2VlZA' }] }, 20, 'jwks')).toThrow(/private key material/);
    // A v2 partner listing its ML-KEM key first still gets its EC key chosen for the v1 half.
    expect(selectEncryptionKey({ keys: [akp, { ...ec, kid: 'ec', use: 'enc' }] }, 'p').kid).toBe('ec');
    expect(() => checkJwks({ keys: Array(21).fill(ec) }, 20, 'jwks')).toThrow(/at most 20/);
    expect(() => checkJwks({ nokeys: [] }, 20, 'jwks')).toThrow(/not a JWKS/);
  });
  it('finds signing keys by kid and checks alg against the curve', () => {
    expect(selectVerificationKey({ keys: [{ ...ec, kid: 's', use: 'sig', alg: 'ES256' }] }, 'p', 's')?.kid).toBe('s');
    expect(selectVerificationKey({ keys: [{ ...ec, kid: 's', use: 'sig' }] }, 'p', 'other')).toBeUndefined();
    expect(() => selectVerificationKey({ keys: [{ ...ec, kid: 's', alg: 'ES384' }] }, 'p', 's')).toThrow(
      /expected ES256/,
    );
  });
  it('reads freshness from Cache-Control within bounds', () => {
    expect(freshnessMs('public, max-age=600', 300_000, 30_000, 86_400_000)).toBe(600_000);
    expect(freshnessMs('max-age=1', 300_000, 30_000, 86_400_000)).toBe(30_000);
    expect(freshnessMs('max-age=99999999', 300_000, 30_000, 86_400_000)).toBe(86_400_000);
    expect(freshnessMs('no-store', 300_000, 30_000, 86_400_000)).toBe(30_000);
    expect(freshnessMs(null, 300_000, 30_000, 86_400_000)).toBe(300_000);
  });
});

describe('deliver task payload', () => {
  it('accepts exactly { deliveryId: uuid }', () => {
    expect(assertDeliverPayload({ deliveryId: '6f1c2a0e-8a55-4f0e-9d59-2f5b1b7c9e01' })).toEqual({
      deliveryId: '6f1c2a0e-8a55-4f0e-9d59-2f5b1b7c9e01',
    });
    for (const bad of [
      null,
      [],
      {},
      { deliveryId: 'x' },
      { deliveryId: '6f1c2a0e-8a55-4f0e-9d59-2f5b1b7c9e01', bundle: {} },
    ])
      expect(() => assertDeliverPayload(bad)).toThrow();
  });
});

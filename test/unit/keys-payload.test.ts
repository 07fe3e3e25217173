import { describe, expect, it } from 'vitest';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { parseRotatePayload } from '../../src/worker/tasks/keys.ts';
import { jwkThumbprint } from '../../src/directory/partner-key-log.ts';

describe('keys_rotate payload', () => {
  it('accepts the cron payload (scheduled run) and a manual request; refuses anything else', () => {
    expect(parseRotatePayload({ _cron: { ts: '2026-01-01T00:00:00Z', backfilled: false } })).toBeUndefined();
    expect(parseRotatePayload(null)).toBeUndefined();
    expect(parseRotatePayload({ use: 'enc', now: true, requestedBy: 'cli:ops' })).toEqual({
      use: 'enc',
      now: true,
      requestedBy: 'cli:ops',
    });
    expect(() => parseRotatePayload({ use: 'everything', now: true, requestedBy: 'x' })).toThrow(/sig\|enc\|audit/);
    expect(() => parseRotatePayload({ use: 'sig', now: 'yes', requestedBy: 'x' })).toThrow();
    expect(() => parseRotatePayload({ use: 'sig', now: false, requestedBy: 'x'.repeat(201) })).toThrow();
  });
});

describe('partner key thumbprints', () => {
  it('equal RFC 7638 thumbprints computed by jose, ignoring kid, use and alg', async () => {
    for (const alg of ['ES256', 'ES384', 'RS256', 'EdDSA'] as const) {
      const { publicKey } = await generateKeyPair(alg, { extractable: true });
      const jwk = await exportJWK(publicKey);
      expect(jwkThumbprint({ ...jwk, kid: 'k', use: 'sig', alg } as never), alg).toBe(
        await calculateJwkThumbprint(jwk),
      );
    }
  });
});

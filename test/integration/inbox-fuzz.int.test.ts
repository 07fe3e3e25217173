import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { claimsFor, publishedEncKey, seal, signContent, softPartner, type SoftPartner } from '../helpers/envelopes.ts';
import { GatewayError } from '../../src/errors.ts';
import { openCompactJwe } from '../../src/jose/open.ts';
import { gatewayDecryptionKeys } from '../../src/inbound/decryption-keys.ts';

/** A small deterministic PRNG, so a failure can be replayed. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0) / 2 ** 32;
}

const HOSTILE_VALUES: unknown[] = [
  null,
  0,
  -1,
  1e308,
  '',
  ' ',
  'A'.repeat(5000),
  [],
  {},
  [1, 2],
  { kty: 'EC' },
  true,
  '__proto__',
  { __proto__: { polluted: 1 } },
];

/**
 * Hostile envelopes: random byte flips, truncations and header values. Every
 * one must be either opened or refused with a 4xx GatewayError: never a
 * crash, never a 5xx, never a stored message.
 */
describe('POST /inbox under random hostile input', () => {
  let gw: TestGateway;
  let partner: SoftPartner;
  let good: string;
  beforeAll(async () => {
    gw = await startTestGateway();
    partner = await softPartner('https://fuzz.test');
    await gw.app.ctx.directory.add({ id: partner.id, endpoint: 'https://fuzz.test/inbox', jwks: partner.jwks });
    good = seal(
      await publishedEncKey(gw.url),
      await signContent(partner, claimsFor(partner, gw.config.org, { resourceType: 'Bundle', type: 'collection' })),
    );
  });
  afterAll(async () => gw?.close());

  function mutate(rand: () => number): string {
    const parts = good.split('.');
    const pick = Math.floor(rand() * 4);
    if (pick === 0) {
      // Flip a random character of a random segment.
      const i = Math.floor(rand() * 5);
      const seg = parts[i]!;
      if (seg.length) {
        const at = Math.floor(rand() * seg.length);
        const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.!\u00e9';
        parts[i] = seg.slice(0, at) + alphabet[Math.floor(rand() * alphabet.length)] + seg.slice(at + 1);
      }
      return parts.join('.');
    }
    if (pick === 1) return good.slice(0, Math.floor(rand() * good.length));
    // Replace or add a header member with a hostile value (the tag then fails, if nothing earlier does).
    const header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString()) as Record<string, unknown>;
    const names = ['alg', 'enc', 'kid', 'epk', 'zip', 'crit', 'apu', 'apv', 'cty', 'x5u', 'jku'];
    const name = names[Math.floor(rand() * names.length)]!;
    const value = HOSTILE_VALUES[Math.floor(rand() * HOSTILE_VALUES.length)];
    if (pick === 2) header[name] = value;
    else if (header.epk && typeof header.epk === 'object')
      (header.epk as Record<string, unknown>)[['kty', 'crv', 'x', 'y', 'd'][Math.floor(rand() * 5)]!] = value;
    parts[0] = Buffer.from(JSON.stringify(header)).toString('base64url');
    return parts.join('.');
  }

  it('1,000 mutations through open.ts: each opened or refused with a 4xx code', async () => {
    const rand = prng(20261122);
    const options = {
      hsm: gw.app.ctx.hsm,
      kdf: gw.app.ctx.config.hsmKdf,
      resolveKey: gatewayDecryptionKeys(gw.app.ctx.keyring),
    };
    const codes = new Map<string, number>();
    for (let i = 0; i < 1000; i++) {
      const input = mutate(rand);
      try {
        await openCompactJwe(input, options);
        codes.set('opened', (codes.get('opened') ?? 0) + 1);
      } catch (err) {
        if (!(err instanceof GatewayError) || err.status >= 500)
          throw new Error(`mutation ${i} gave ${String(err)}: ${input.slice(0, 200)}`);
        codes.set(err.code, (codes.get(err.code) ?? 0) + 1);
      }
    }
    // The mutations reach every layer of the check.
    for (const code of ['JWE_MALFORMED', 'JWE_UNSUPPORTED_ALG', 'JWE_DECRYPT_FAILED', 'JWE_INVALID_EPK'])
      expect(codes.get(code), JSON.stringify([...codes])).toBeGreaterThan(0);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('150 mutations over HTTP: only 200 or 4xx OperationOutcomes, and no message stored for a refusal', async () => {
    const rand = prng(7);
    let accepted = 0;
    for (let i = 0; i < 150; i++) {
      const res = await fetch(`${gw.url}/inbox`, {
        method: 'POST',
        headers: { 'content-type': 'application/jose' },
        body: mutate(rand),
      });
      expect(res.status === 200 || (res.status >= 400 && res.status < 500), `mutation ${i}: HTTP ${res.status}`).toBe(
        true,
      );
      if (res.status === 200) accepted++;
      else expect(((await res.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');
    }
    const { rows } = await gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM inbox_messages');
    // A mutation can only be accepted if it leaves the envelope intact (e.g. cty replaced by itself is not generated): at most 1 row.
    expect(rows[0].n).toBe(Math.min(accepted, 1));
  });
});

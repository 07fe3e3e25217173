import fc from 'fast-check';
import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Partner, PartnerJwk } from '../../src/directory/directory.ts';
import { GatewayError } from '../../src/errors.ts';
import { claimedSender, verifySignedContent, type ContentChecks } from '../../src/protocol/signed-content.ts';
import { claimsFor } from '../helpers/envelopes.ts';
import { b64u, hostileJsonValue, hostileString, mutatedJson, mutatedText, rawBytes } from './arbitraries.ts';
import { fuzz, fuzzAsync, resolvesOr4xx } from './harness.ts';

const ORG = 'https://us.example';
const SENDER = 'https://partner.example';
const KID = 'sig-1';
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...key.publicKey.export({ format: 'jwk' }), kid: KID, use: 'sig', alg: 'ES256' } as PartnerJwk;

/**
 * The directory in memory: this property is about the verifier's own reading
 * of the JWS (POST /inbox runs the same checks against the real directory in
 * PostgreSQL). Unknown senders and kids answer as the real one does.
 */
const directory: ContentChecks['directory'] = {
  sender: async (id: string) => (id === SENDER ? ({ id, status: 'active' } as Partner) : undefined),
  verificationKey: async (_id: string, kid: string) => {
    if (kid !== KID) throw new GatewayError('FORBIDDEN', 'no such key');
    return jwk;
  },
};
const checks: ContentChecks = { directory, org: ORG, clockSkewMs: 300_000, maxAgeMs: 48 * 3600_000, maxDepth: 65 };

/** A compact JWS over any header and payload text, signed with the partner's real key (ES256). */
function signed(header: unknown, payload: string): string {
  const input = `${b64u(JSON.stringify(header) ?? 'null')}.${b64u(payload)}`;
  const signature = sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64u(signature)}`;
}

const HEADER = { alg: 'ES256', kid: KID, typ: 'exchange+jwt' };
const bundle = { resourceType: 'Bundle', type: 'collection', entry: [] };
const claims = () => claimsFor({ id: SENDER }, ORG, bundle) as unknown as Record<string, unknown>;

describe('fuzz: signed content JWS (src/protocol/signed-jws.ts)', () => {
  it('the valid seed verifies', async () => {
    expect((await verifySignedContent(signed(HEADER, JSON.stringify(claims())), checks)).claims.iss).toBe(SENDER);
  });

  it('validly signed claims with mutated members (iss, aud, iat, jti, content of any type): verified or a 4xx', async () => {
    await fuzzAsync(
      fc.constant(null).chain(() => mutatedJson(claims())),
      async (c) => void (await resolvesOr4xx(() => verifySignedContent(signed(HEADER, JSON.stringify(c)), checks))),
      { numRuns: 2000 },
    );
  });

  it('validly signed headers with mutated members (alg, kid, typ, crit of any type): verified or a 4xx', async () => {
    const payload = JSON.stringify(claims());
    await fuzzAsync(
      fc.oneof(mutatedJson(HEADER), hostileJsonValue),
      async (h) => void (await resolvesOr4xx(() => verifySignedContent(signed(h, payload), checks))),
      { numRuns: 1500 },
    );
  });

  it('validly signed payloads of any text (not JSON, deep, invalid UTF-8): refused with a 4xx', async () => {
    await fuzzAsync(
      fc.oneof(
        hostileString,
        rawBytes.map((b) => b.toString('latin1')),
        fc.integer({ min: 1, max: 5000 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
      ),
      async (text) => void (await resolvesOr4xx(() => verifySignedContent(signed(HEADER, text), checks))),
      { numRuns: 1000 },
    );
  });

  it('the JWS text mutated (segments cut, characters replaced): verified or a 4xx', async () => {
    const good = signed(HEADER, JSON.stringify(claims()));
    await fuzzAsync(
      fc.oneof(mutatedText(good), fc.string({ unit: 'binary', maxLength: 100 })),
      async (jws) => void (await resolvesOr4xx(() => verifySignedContent(jws, checks))),
      { numRuns: 1500 },
    );
  });

  it('claimedSender never throws, whatever the text', () => {
    const good = signed(HEADER, JSON.stringify(claims()));
    fuzz(
      fc.oneof(mutatedText(good), fc.string({ unit: 'binary', maxLength: 100 })),
      (jws) => {
        const iss = claimedSender(jws);
        expect(iss === undefined || typeof iss === 'string').toBe(true);
      },
      { numRuns: 1500 },
    );
  });
});

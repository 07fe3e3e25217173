import fc from 'fast-check';
import { generateKeyPairSync } from 'node:crypto';
import { CompactSign, FlattenedSign } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkHeader, parseCompactJwe } from '../../src/jose/jwe-header.ts';
import { verifyCompact, verifyDetached } from '../../src/jose/verify.ts';
import { b64u, hostileJsonValue, hostileString, mutatedJson, mutatedText, rawBytes } from './arbitraries.ts';
import { fuzz, fuzzAsync, resolvesOr4xx, returnsOr4xx } from './harness.ts';
import { seal } from '../helpers/envelopes.ts';

const enc = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const encJwk = { ...enc.publicKey.export({ format: 'jwk' }), kid: 'enc-1' };
const sig = generateKeyPairSync('ec', { namedCurve: 'P-256' });

/** A compact JWE string rebuilt from its five segments, with the header re-encoded as given. */
const withHeader = (jwe: string, header: unknown) =>
  [b64u(JSON.stringify(header) ?? 'null'), ...jwe.split('.').slice(1)].join('.');

/** Five segments, each valid base64url of arbitrary bytes or a hostile string. */
const segment = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map(b64u),
  hostileString,
  fc.constantFrom('', 'AA', 'AAA', 'A', '====', 'A+/_'),
);

describe('fuzz: compact JWE reader and header allowlist (src/jose/jwe-header.ts)', () => {
  const good = seal(encJwk, 'x'.repeat(40));
  const header = JSON.parse(Buffer.from(good.split('.')[0]!, 'base64url').toString()) as Record<string, unknown>;
  const read = (text: string) => checkHeader(parseCompactJwe(text));

  it('the valid seed passes', () => expect(read(good).crv).toBe('P-256'));

  it('arbitrary text and five arbitrary segments: an accepted header or a 4xx GatewayError', () => {
    fuzz(
      fc.oneof(
        fc.string({ unit: 'binary', maxLength: 200 }),
        fc.array(segment, { minLength: 1, maxLength: 7 }).map((s) => s.join('.')),
      ),
      (text) => void returnsOr4xx(() => read(text)),
      { numRuns: 2000 },
    );
  });

  it('a valid envelope with its header mutated (members, epk, types): accepted or a 4xx GatewayError', () => {
    fuzz(mutatedJson(header), (h) => void returnsOr4xx(() => read(withHeader(good, h))), { numRuns: 3000 });
  });

  it('header text with repeated members: accepted or a 4xx GatewayError', () => {
    fuzz(
      headerText(header),
      (text) => void returnsOr4xx(() => read([b64u(text), ...good.split('.').slice(1)].join('.'))),
      { numRuns: 1000 },
    );
  });

  it('headers of arbitrary JSON and raw header bytes: accepted or a 4xx GatewayError', () => {
    fuzz(
      fc.oneof(
        hostileJsonValue.map((h) => withHeader(good, h)),
        rawBytes.map((b) => [b64u(b), ...good.split('.').slice(1)].join('.')),
        mutatedText(good),
      ),
      (text) => void returnsOr4xx(() => read(text)),
      { numRuns: 2000 },
    );
  });
});

/** Header text written by hand, so members can repeat ({"alg":…,"alg":…}) and values keep any JSON form. */
function headerText(members: Record<string, unknown>): fc.Arbitrary<string> {
  const pair = fc.tuple(
    fc.oneof(fc.constantFrom(...Object.keys(members)), fc.constantFrom('zip', 'crit', 'b64', '__proto__')),
    fc.oneof(fc.constantFrom(...Object.values(members)), hostileJsonValue),
  );
  return fc
    .tuple(fc.constant(Object.entries(members)), fc.array(pair, { minLength: 1, maxLength: 4 }), fc.boolean())
    .map(([base, extra, before]) => {
      const all = before ? [...extra, ...base] : [...base, ...extra];
      return `{${all.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',')}}`;
    });
}

describe('fuzz: compact and detached JWS verification (src/jose/verify.ts)', () => {
  let good: string;
  let detached: string;
  const content = Buffer.from('imaging content');
  const key = async () => sig.publicKey;
  beforeAll(async () => {
    good = await new CompactSign(Buffer.from(JSON.stringify({ iss: 'a', n: 1 })))
      .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'exchange+jwt' })
      .sign(sig.privateKey);
    const flat = await new FlattenedSign(content)
      .setProtectedHeader({ alg: 'ES256', kid: 'k1', b64: false, crit: ['b64'] })
      .sign(sig.privateKey);
    detached = `${flat.protected}..${flat.signature}`;
  });

  it('the valid seeds verify', async () => {
    expect((await verifyCompact(good, key, { typ: 'exchange+jwt' })).header.kid).toBe('k1');
    expect((await verifyDetached(detached, content, key)).kid).toBe('k1');
  });

  const headerOf = (jws: string) => JSON.parse(Buffer.from(jws.split('.')[0]!, 'base64url').toString());
  const rehead = (jws: string, h: unknown) => [b64u(JSON.stringify(h) ?? 'null'), ...jws.split('.').slice(1)].join('.');

  it('compact: arbitrary text, mutated text and mutated headers: verified or a 4xx GatewayError', async () => {
    await fuzzAsync(
      fc.oneof(
        fc.string({ unit: 'binary', maxLength: 200 }),
        fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join('.')),
        fc.constant(null).chain(() => mutatedText(good)),
        fc.constant(null).chain(() => mutatedJson(headerOf(good)).map((h) => rehead(good, h))),
        hostileJsonValue.map((h) => rehead(good, h)),
      ),
      async (jws) => void (await resolvesOr4xx(() => verifyCompact(jws, key, { typ: 'exchange+jwt' }))),
      { numRuns: 2000 },
    );
  });

  it('detached: mutated headers, segments and content: verified or a 4xx GatewayError', async () => {
    await fuzzAsync(
      fc.tuple(
        fc.oneof(
          fc.constant(null).chain(() => mutatedText(detached)),
          fc.constant(null).chain(() => mutatedJson(headerOf(detached)).map((h) => rehead(detached, h))),
          hostileJsonValue.map((h) => rehead(detached, h)),
          fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join('.')),
        ),
        fc.oneof(fc.constant(content), rawBytes),
      ),
      async ([jws, bytes]) => void (await resolvesOr4xx(() => verifyDetached(jws, bytes, key))),
      { numRuns: 1500 },
    );
  });
});

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Hsm } from '../../hsm/hsm.ts';
import { openCompactJwe, type OpenOptions } from '../../src/jose/open.ts';
import { openStream } from '../../src/jose/stream-open.ts';
import type { PlaintextSink } from '../../src/jose/stream-sinks.ts';
import { seal } from '../helpers/envelopes.ts';
import { createTestToken } from '../helpers/hsm.ts';
import { b64u, hostileJsonValue, mutatedJson, mutatedText, rawBytes } from './arbitraries.ts';
import { fuzzAsync, resolvesOr4xx } from './harness.ts';

const CTY = 'application/dicom';

/** A sink that keeps nothing: the property is about what the reader accepts, not where the bytes go. */
const discardSink = (): PlaintextSink => ({
  write: async () => undefined,
  commit: async () => undefined,
  discard: async () => undefined,
});

async function* chunked(text: string, size: number): AsyncGenerator<Buffer> {
  const bytes = Buffer.from(text, 'latin1');
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

/**
 * The whole-message and the streaming JWE reader with the key in a real
 * SoftHSM token: a hostile envelope is opened or refused with a 4xx, after at
 * most one ECDH in the token, and nothing else.
 */
describe('fuzz: opening compact JWE with the HSM (src/jose/open.ts, src/jose/stream-open.ts)', () => {
  let hsm: Hsm;
  let options: OpenOptions;
  let good: string;
  let streamed: string;
  beforeAll(async () => {
    const token = createTestToken();
    hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 2 });
    const info = await hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'derive', 'fuzz-open');
    options = {
      hsm,
      kdf: 'in-token',
      resolveKey: async (kid) => (kid === 'enc-fuzz' ? { hsmId: info.id, crv: 'P-256', kid } : undefined),
    };
    const recipient = { ...info.publicJwk, kid: 'enc-fuzz' };
    good = seal(recipient, 'a compact envelope');
    streamed = seal(recipient, Buffer.alloc(3000, 7), { cty: CTY });
  });
  afterAll(() => hsm?.close());

  const rehead = (jwe: string, h: unknown) => [b64u(JSON.stringify(h) ?? 'null'), ...jwe.split('.').slice(1)].join('.');
  const headerOf = (jwe: string) => JSON.parse(Buffer.from(jwe.split('.')[0]!, 'base64url').toString());
  const hostileEnvelope = (jwe: string) =>
    fc.oneof(
      mutatedText(jwe),
      mutatedJson(headerOf(jwe)).map((h) => rehead(jwe, h)),
      hostileJsonValue.map((h) => rehead(jwe, h)),
      rawBytes.map((b) => b.toString('latin1')),
    );

  it('the valid seeds open', async () => {
    expect((await openCompactJwe(good, options)).plaintext.toString()).toBe('a compact envelope');
    expect((await openStream(chunked(streamed, 100), { ...options, cty: CTY }, discardSink())).length).toBe(3000);
  });

  it('openCompactJwe: mutated envelopes are opened or refused with a 4xx', async () => {
    await fuzzAsync(
      fc.constant(null).chain(() => hostileEnvelope(good)),
      async (jwe) => void (await resolvesOr4xx(() => openCompactJwe(jwe, options))),
      { numRuns: 500 },
    );
  });

  it('openStream: mutated envelopes at any chunking are opened or refused with a 4xx', async () => {
    await fuzzAsync(
      fc.tuple(
        fc.constant(null).chain(() => hostileEnvelope(streamed)),
        fc.constantFrom(1, 3, 4, 5, 64, 1000, 1 << 16),
      ),
      async ([jwe, size]) =>
        void (await resolvesOr4xx(() =>
          openStream(chunked(jwe, size), { ...options, cty: CTY, maxBytes: 4096 }, discardSink()),
        )),
      { numRuns: 500 },
    );
  });
});

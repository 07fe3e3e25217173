import fc from 'fast-check';
import { sign } from 'node:crypto';
import type { JWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { claimsFor, publishedEncKey, seal, softPartner, type SoftPartner } from '../helpers/envelopes.ts';
import {
  b64u,
  hostileJsonValue,
  hostileString,
  mutatedBytes,
  mutatedJson,
  mutatedText,
  rawBytes,
} from './arbitraries.ts';
import { fuzzAsync } from './harness.ts';
import { auditCount, expectReady, headerSafe, send, type Answer } from './http.ts';

const JOSE = 'application/jose';

/**
 * The peer routes under hostile envelopes, over HTTP (in process): every
 * answer is a 200 receipt or a 4xx OperationOutcome, every 4xx is audited
 * as inbox.refused, and the gateway stays ready.
 */
describe('fuzz over HTTP: POST /inbox and POST /inbox/imaging', () => {
  let gw: TestGateway;
  let partner: SoftPartner;
  let encKey: JWK & { kid: string };
  let refusals = 0;
  beforeAll(async () => {
    gw = await startTestGateway({ RATE_LIMIT: '0' });
    partner = await softPartner('https://fuzz-partner.test');
    await gw.app.ctx.directory.add({ id: partner.id, endpoint: `${partner.id}/inbox`, jwks: partner.jwks });
    encKey = await publishedEncKey(gw.url);
  });
  afterAll(async () => gw?.close());
  afterEach(async () => expectReady(gw.app));

  /** The inner JWS over any header and payload, signed with the partner's real key. */
  const signed = (header: unknown, payload: string) => {
    const input = `${b64u(JSON.stringify(header) ?? 'null')}.${b64u(payload)}`;
    const sig = sign('sha256', Buffer.from(input), { key: partner.sigPrivate, dsaEncoding: 'ieee-p1363' });
    return `${input}.${b64u(sig)}`;
  };
  const jwsHeader = () => ({ alg: 'ES256', kid: partner.sigKid, typ: 'exchange+jwt' });
  const claims = () =>
    claimsFor(partner, gw.config.org, { resourceType: 'Bundle', type: 'collection', entry: [] }) as unknown as Record<
      string,
      unknown
    >;

  function judge(res: Answer, what: string) {
    expect(res.statusCode, `${what}: HTTP ${res.statusCode} ${res.body.slice(0, 300)}`).toBeLessThan(500);
    if (res.statusCode >= 400) {
      refusals++;
      expect(JSON.parse(res.body).resourceType, what).toBe('OperationOutcome');
    } else expect(res.statusCode, what).toBe(200);
  }

  async function expectRefusalsAudited(run: () => Promise<void>) {
    refusals = 0;
    const before = await auditCount(gw.app, 'inbox.refused');
    await run();
    expect(await auditCount(gw.app, 'inbox.refused')).toBe(before + refusals);
  }

  const post = (url: string, type: string, payload: string | Buffer) =>
    send(gw.app, { method: 'POST', url, headers: type ? { 'content-type': type } : {}, payload });

  it('the valid seed is received', async () => {
    const res = await post('/inbox', JOSE, seal(encKey, signed(jwsHeader(), JSON.stringify(claims()))));
    expect(res.statusCode, res.body).toBe(200);
  });

  it('sealed envelopes with the JWE header or text mutated', async () => {
    const good = seal(encKey, signed(jwsHeader(), JSON.stringify(claims())));
    const header = JSON.parse(Buffer.from(good.split('.')[0]!, 'base64url').toString());
    const rest = good.split('.').slice(1).join('.');
    const envelope = fc.oneof(
      mutatedJson(header).map((h) => `${b64u(JSON.stringify(h))}.${rest}`),
      hostileJsonValue.map((h) => `${b64u(JSON.stringify(h) ?? 'null')}.${rest}`),
      mutatedText(good),
    );
    await expectRefusalsAudited(() =>
      fuzzAsync(envelope, async (jwe) => judge(await post('/inbox', JOSE, jwe), 'inbox envelope'), { numRuns: 150 }),
    );
  });

  it('correctly sealed and signed content with mutated claims or a mutated JWS header', async () => {
    const content = fc.oneof(
      fc.constant(null).chain(() => mutatedJson(claims()).map((c) => signed(jwsHeader(), JSON.stringify(c)))),
      fc.constant(null).chain(() => mutatedJson(jwsHeader()).map((h) => signed(h, JSON.stringify(claims())))),
      hostileString.map((text) => signed(jwsHeader(), text)),
      hostileString,
    );
    await expectRefusalsAudited(() =>
      fuzzAsync(content, async (jws) => judge(await post('/inbox', JOSE, seal(encKey, jws)), 'inbox content'), {
        numRuns: 150,
      }),
    );
  });

  it('raw bodies and hostile content types', async () => {
    const type = fc.oneof(
      fc.constantFrom(JOSE, `${JOSE}; charset=utf-8`, 'text/plain', ''),
      hostileString.map(headerSafe),
    );
    await expectRefusalsAudited(() =>
      fuzzAsync(fc.tuple(rawBytes, type), async ([body, t]) => judge(await post('/inbox', t, body), `inbox raw ${t}`), {
        numRuns: 100,
      }),
    );
  });

  it('/inbox/imaging: multipart bodies of three application/jose parts with one edit, and raw bodies', async () => {
    const B = 'fuzz-imaging';
    const good = seal(encKey, signed(jwsHeader(), JSON.stringify(claims())));
    const parts = [good, good, good].map((p) => `--${B}\r\nContent-Type: ${JOSE}\r\n\r\n${p}\r\n`).join('');
    const body = Buffer.from(`${parts}--${B}--\r\n`);
    const multipart = `multipart/related; type="${JOSE}"; boundary=${B}`;
    const upload = fc.oneof(
      fc.tuple(mutatedBytes(body), fc.constant(multipart)),
      fc.tuple(
        rawBytes,
        fc.oneof(fc.constantFrom(multipart, 'multipart/related', JOSE), hostileString.map(headerSafe)),
      ),
    );
    await expectRefusalsAudited(() =>
      fuzzAsync(upload, async ([payload, t]) => judge(await post('/inbox/imaging', t, payload), `inbox/imaging ${t}`), {
        numRuns: 100,
      }),
    );
  });
});

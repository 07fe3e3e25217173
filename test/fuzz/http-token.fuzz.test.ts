import fc from 'fast-check';
import { KeyObject, randomUUID, sign } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ASSERTION_TYPE, TOKEN_PATH } from '../../src/auth/token-endpoint.ts';
import { SCOPE_ALL_READ } from '../../src/auth/scopes.ts';
import { testClient, type TestClient } from '../helpers/auth.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { b64u, hostileJsonValue, hostileString, mutatedJson, mutatedText, rawBytes } from './arbitraries.ts';
import { fuzzAsync } from './harness.ts';
import { auditCount, expectReady, headerSafe, pct, send, type Answer } from './http.ts';

const FORM = 'application/x-www-form-urlencoded';
const NAMES = ['grant_type', 'client_assertion_type', 'client_assertion', 'scope'] as const;

/**
 * The token endpoint under hostile form bodies and client assertions, over
 * HTTP (in process): every answer is a token or a 4xx OAuth error, every
 * refusal is audited as auth.failure, and the gateway stays ready.
 */
describe('fuzz over HTTP: POST /auth/token', () => {
  let gw: TestGateway;
  let client: TestClient;
  let refusals = 0;
  beforeAll(async () => {
    gw = await startTestGateway({ RATE_LIMIT: '0' });
    client = await testClient(gw, { scopes: [SCOPE_ALL_READ] });
  });
  afterAll(async () => gw?.close());
  afterEach(async () => expectReady(gw.app));

  /** A compact JWS over any header and claims, signed with the client's registered key (ES256). */
  const assertion = (header: unknown, claims: unknown) => {
    const input = `${b64u(JSON.stringify(header) ?? 'null')}.${b64u(JSON.stringify(claims) ?? 'null')}`;
    const key = KeyObject.from(client.privateKey);
    return `${input}.${b64u(sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }))}`;
  };
  const header = () => ({ alg: 'ES256', kid: client.kid, typ: 'JWT' });
  const claims = () => ({
    iss: client.id,
    sub: client.id,
    aud: gw.config.baseUrl + TOKEN_PATH,
    exp: Math.floor(Date.now() / 1000) + 240,
    jti: randomUUID(),
  });
  const form = (pairs: Array<[string, string]>) => pairs.map(([k, v]) => `${pct(k)}=${pct(v)}`).join('&');
  const valid = (a: string): Array<[string, string]> => [
    ['grant_type', 'client_credentials'],
    ['client_assertion_type', ASSERTION_TYPE],
    ['client_assertion', a],
    ['scope', SCOPE_ALL_READ],
  ];

  function judge(res: Answer, what: string) {
    expect(res.statusCode, `${what}: HTTP ${res.statusCode} ${res.body.slice(0, 300)}`).toBeLessThan(500);
    const body = JSON.parse(res.body);
    if (res.statusCode >= 400) {
      refusals++;
      expect(typeof body.error, what).toBe('string');
    } else expect(typeof body.access_token, what).toBe('string');
  }

  async function expectRefusalsAudited(run: () => Promise<void>) {
    refusals = 0;
    const before = await auditCount(gw.app, 'auth.failure');
    await run();
    expect(await auditCount(gw.app, 'auth.failure')).toBe(before + refusals);
  }

  const post = (type: string, payload: string | Buffer) =>
    send(gw.app, { method: 'POST', url: TOKEN_PATH, headers: type ? { 'content-type': type } : {}, payload });

  it('the valid seed gets a token', async () => {
    judge(await post(FORM, form(valid(assertion(header(), claims())))), 'valid');
  });

  it('form bodies: parameters missing, repeated, of hostile values, raw bytes, other content types', async () => {
    const pair = fc.tuple(fc.oneof(fc.constantFrom(...NAMES), hostileString), hostileString);
    const body = fc.oneof(
      fc.array(pair, { maxLength: 6 }).map(form),
      fc
        .tuple(fc.subarray([...NAMES.keys()]), fc.array(pair, { maxLength: 2 }))
        .map(([keep, extra]) => form([...valid('x.y.z').filter((_, i) => keep.includes(i)), ...extra])),
      rawBytes,
    );
    const type = fc.oneof(
      { weight: 5, arbitrary: fc.constant(FORM) },
      { weight: 1, arbitrary: fc.constantFrom(`${FORM}; charset=utf-8`, 'application/json', 'text/plain', '') },
      { weight: 1, arbitrary: hostileString.map(headerSafe) },
    );
    await expectRefusalsAudited(() =>
      fuzzAsync(fc.tuple(body, type), async ([b, t]) => judge(await post(t, b), `form ${t}`), {
        numRuns: 200,
        // An empty or malformed JSON body was a 500 (the JSON parser's GatewayError); other types went unaudited.
        examples: [
          ['', 'application/json'],
          ['{', 'application/json'],
          ['grant_type=client_credentials', 'text/plain'],
        ],
      }),
    );
  });

  it('validly signed assertions with arbitrary headers and claims', async () => {
    const signedAssertion = fc.oneof(
      fc.constant(null).chain(() => mutatedJson(header()).map((h) => assertion(h, claims()))),
      fc.constant(null).chain(() => mutatedJson(claims()).map((c) => assertion(header(), c))),
      hostileJsonValue.map((c) => assertion(header(), c)),
      hostileJsonValue.map((h) => assertion(h, claims())),
      fc.constant(null).chain(() => mutatedText(assertion(header(), claims()))),
    );
    await expectRefusalsAudited(() =>
      fuzzAsync(signedAssertion, async (a) => judge(await post(FORM, form(valid(a))), 'assertion'), { numRuns: 200 }),
    );
  });

  it('a NUL in a signed assertion jti is a 4xx, not a PostgreSQL error', async () => {
    await expectRefusalsAudited(async () =>
      judge(await post(FORM, form(valid(assertion(header(), { ...claims(), jti: '\0' })))), 'jti NUL'),
    );
  });
});

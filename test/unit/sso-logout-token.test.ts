import { generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { createLocalJWKSet, type JWK, type JWTVerifyGetKey } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  BACKCHANNEL_LOGOUT_EVENT,
  LOGOUT_TOKEN_MAX_AGE_S,
  LogoutRefusal,
  verifyLogoutToken,
} from '../../src/auth/backchannel-logout.ts';
import { CLOCK_TOLERANCE_S, type SsoClient } from '../../src/auth/sso.ts';
import { GatewayError } from '../../src/errors.ts';

const ISSUER = 'https://idp.example-hospital.org/realms/staff';
const NOW = new Date('2030-01-01T00:00:00Z');
const nowS = NOW.getTime() / 1000;
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwks = createLocalJWKSet({
  keys: [{ ...(publicKey.export({ format: 'jwk' }) as JWK), kid: 'k1', alg: 'RS256' }],
});

/** An issuer with these keys (null: none the gateway may fetch) and, when given, its ID token algorithms. */
function issuer(keys: JWTVerifyGetKey | null = jwks, algs?: string[]): SsoClient {
  const metadata = { issuer: ISSUER, ...(algs ? { id_token_signing_alg_values_supported: algs } : {}) };
  return {
    config: { serverMetadata: () => metadata },
    settings: { oidcClientId: 'gateway' },
    issuerKeys: keys ?? undefined,
  } as unknown as SsoClient;
}

const b64 = (text: string) => Buffer.from(text).toString('base64url');
function token(claims: Record<string, unknown>, header = '{"alg":"RS256","kid":"k1"}', key: KeyObject = privateKey) {
  const input = `${b64(header)}.${b64(JSON.stringify(claims))}`;
  return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`;
}
const claims = (change: Record<string, unknown> = {}) => ({
  iss: ISSUER,
  aud: 'gateway',
  iat: nowS,
  jti: randomUUID(),
  sid: 'sid-1',
  events: { [BACKCHANNEL_LOGOUT_EVENT]: {} },
  ...change,
});

async function reason(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LogoutRefusal);
  return (err as LogoutRefusal).reason;
}

describe('the logout token of a back-channel logout', () => {
  it('names the issuer session, and keeps its jti as long as a token with it could be accepted', async () => {
    const taken = await verifyLogoutToken(issuer(), token(claims({ jti: 'j-1', exp: nowS + 60 })), NOW);
    expect(taken).toEqual({ issuer: ISSUER, jti: 'j-1', sid: 'sid-1', acceptableUntil: nowS + 60 + CLOCK_TOLERANCE_S });
    // Without exp (the spec does not require one), or with a far one, the age limit bounds it.
    const noExp = await verifyLogoutToken(issuer(), token(claims({ sub: 'u-1', sid: undefined })), NOW);
    expect(noExp).toMatchObject({ subject: 'u-1', acceptableUntil: nowS + LOGOUT_TOKEN_MAX_AGE_S + CLOCK_TOLERANCE_S });
    expect(noExp).not.toHaveProperty('sid');
    const farExp = await verifyLogoutToken(issuer(), token(claims({ exp: nowS + 86_400 })), NOW);
    expect(farExp.acceptableUntil).toBe(nowS + LOGOUT_TOKEN_MAX_AGE_S + CLOCK_TOLERANCE_S);
  });

  it('takes the explicit logout type and plain JWT types, not another kind of token', async () => {
    for (const typ of ['logout+jwt', 'application/logout+jwt', 'JWT'])
      await expect(
        verifyLogoutToken(issuer(), token(claims(), `{"alg":"RS256","kid":"k1","typ":"${typ}"}`), NOW),
      ).resolves.toBeDefined();
    expect(
      await reason(verifyLogoutToken(issuer(), token(claims(), '{"alg":"RS256","kid":"k1","typ":"at+jwt"}'), NOW)),
    ).toBe('not_a_logout_token');
  });

  it('refuses a claim set or header naming a member twice (jose would read the last)', async () => {
    const raw = JSON.stringify(claims()).replace('"sid":"sid-1"', '"sid":"sid-1","sid":"sid-2"');
    const input = `${b64('{"alg":"RS256","kid":"k1"}')}.${b64(raw)}`;
    const twice = `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
    expect(await reason(verifyLogoutToken(issuer(), twice, NOW))).toBe('malformed_token');
    expect(
      await reason(verifyLogoutToken(issuer(), token(claims(), '{"alg":"RS256","kid":"k1","kid":"k2"}'), NOW)),
    ).toBe('malformed_token');
  });

  it('takes only the algorithms the issuer signs ID tokens with, never an HMAC or none', async () => {
    expect(await reason(verifyLogoutToken(issuer(jwks, ['ES256']), token(claims()), NOW))).toBe('alg_not_allowed');
    expect(
      await reason(
        verifyLogoutToken(issuer(jwks, ['HS256', 'none']), token(claims(), '{"alg":"HS256","kid":"k1"}'), NOW),
      ),
    ).toBe('alg_not_allowed');
  });

  it('refuses a sid or sub that is no plain identifier, and a jti that is not one', async () => {
    expect(await reason(verifyLogoutToken(issuer(), token(claims({ sid: 'a\u0000b' })), NOW))).toBe('sid_invalid');
    expect(await reason(verifyLogoutToken(issuer(), token(claims({ sub: 7 })), NOW))).toBe('sub_invalid');
    expect(await reason(verifyLogoutToken(issuer(), token(claims({ jti: 'x'.repeat(256) })), NOW))).toBe('jti_invalid');
    expect(await reason(verifyLogoutToken(issuer(), token(claims({ events: [BACKCHANNEL_LOGOUT_EVENT] })), NOW))).toBe(
      'not_a_logout_event',
    );
  });

  it('is a 503 to retry, not a refusal, while the issuer keys cannot be fetched; a refusal when none may be', async () => {
    const unreachable: JWTVerifyGetKey = () => Promise.reject(new TypeError('fetch failed'));
    const err = await verifyLogoutToken(issuer(unreachable), token(claims()), NOW).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect([(err as GatewayError).code, (err as GatewayError).retryAfter]).toEqual(['UNAVAILABLE', 5]);
    expect(await reason(verifyLogoutToken(issuer(null), token(claims()), NOW))).toBe('issuer_keys_unknown');
    const unknownKid = token(claims(), '{"alg":"RS256","kid":"k9"}');
    expect(await reason(verifyLogoutToken(issuer(), unknownKid, NOW))).toBe('kid_unknown');
  });
});

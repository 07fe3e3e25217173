import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKCHANNEL_LOGOUT_EVENT, LOGOUT_TOKEN_MAX_AGE_S } from '../../src/auth/backchannel-logout.ts';
import { BACKCHANNEL_LOGOUT_PATH, CLOCK_TOLERANCE_S } from '../../src/auth/sso.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { startTestOp, type OpAccount, type TestOp } from '../helpers/oidc-op.ts';
import { fetchBrowser } from '../helpers/fetch-browser.ts';
import { freePort } from '../helpers/ports.ts';

/** One person in both groups: a session on each page, both bound to one issuer session. */
const ADA: OpAccount = { sub: 'u-ada', username: 'ada', groups: ['gateway-compliance', 'gateway-operators'] };
const BEN: OpAccount = { sub: 'u-ben', username: 'ben', groups: ['gateway-compliance', 'gateway-operators'] };

let op: TestOp;
let gw: TestGateway;

const nowS = () => Math.floor(Date.now() / 1000);

interface Entry {
  agent?: { type: string; id: string };
  detail?: Record<string, unknown>;
}
async function auditSince(type: string, since: number): Promise<Entry[]> {
  const { rows } = await gw.app.ctx.pool.query<{ entry: string }>(
    'SELECT entry FROM audit_log WHERE idx >= $1 AND entry LIKE $2 ORDER BY idx',
    [since, `%"type":"${type}"%`],
  );
  return rows.map((r) => JSON.parse(r.entry) as Entry);
}
const auditSize = async () =>
  Number((await gw.app.ctx.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_log')).rows[0]!.n);

interface Binding {
  role: string;
  issuer: string;
  subject: string;
  sid: string | null;
}
/** The issuer binding of the live session behind a session cookie, as the database holds it. */
async function sessionOf(cookie: string): Promise<Binding | undefined> {
  const token = cookie.slice(cookie.indexOf('=') + 1);
  const { rows } = await gw.app.ctx.pool.query<Binding>(
    `SELECT role, sso_issuer AS issuer, sso_subject AS subject, sso_sid AS sid FROM audit_sessions
     WHERE token_hash = $1 AND expires_at > now()`,
    [createHash('sha256').update(token).digest()],
  );
  return rows[0];
}
const liveSessions = async (name: string) =>
  Number(
    (
      await gw.app.ctx.pool.query<{ n: string }>(
        'SELECT count(*) AS n FROM audit_sessions WHERE user_name = $1 AND expires_at > now()',
        [name],
      )
    ).rows[0]!.n,
  );

/**
 * Sign `person` in to the audit page and then the console in one browser,
 * so one issuer session: the two gateway session cookies, and the sid.
 */
async function signInToBoth(person: OpAccount, go = fetchBrowser()) {
  op.signInAs(person);
  expect((await go(`${gw.url}/auth/sso/login?page=audit`)).url.pathname).toBe('/audit/ui/');
  const auditSession = go.held(gw.url, 'gw_audit_session');
  expect((await go(`${gw.url}/auth/sso/login?page=console`)).url.pathname).toBe('/console/');
  const operatorSession = go.held(gw.url, 'gw_audit_session');
  const sid = (await sessionOf(auditSession))?.sid;
  expect(sid).toEqual(expect.any(String));
  // Both gateway sessions are bound to the one issuer session.
  const bound = { issuer: op.issuer, subject: person.sub, sid };
  expect([await sessionOf(auditSession), await sessionOf(operatorSession)]).toEqual([
    { role: 'compliance', ...bound },
    { role: 'operator', ...bound },
  ]);
  return { go, auditSession, operatorSession, sid: sid!, idToken: op.idTokens.at(-1)! };
}

/** The audit API with a compliance session, and a console write with an operator session: 200 and 404 while signed in. */
const auditApi = async (cookie: string) =>
  (await fetch(`${gw.url}/fhir/AuditEvent?_count=1`, { headers: { cookie } })).status;
const consoleWrite = async (cookie: string) =>
  (
    await fetch(`${gw.url}/console/deliveries/${randomUUID()}/retry`, {
      method: 'POST',
      headers: { origin: gw.url, cookie, 'content-type': 'application/json' },
      body: '{}',
    })
  ).status;

const postLogout = (body: string, contentType = 'application/x-www-form-urlencoded') =>
  fetch(`${gw.url}${BACKCHANNEL_LOGOUT_PATH}`, { method: 'POST', headers: { 'content-type': contentType }, body });
const postToken = (token: string) => postLogout(new URLSearchParams({ logout_token: token }).toString());

/** The claims of a logout token the issuer would send for `sid`. */
const logoutClaims = (sid: string, change: Record<string, unknown> = {}) => ({
  iss: op.issuer,
  aud: 'gateway',
  iat: nowS(),
  exp: nowS() + 120,
  jti: randomUUID(),
  sub: ADA.sub,
  sid,
  events: { [BACKCHANNEL_LOGOUT_EVENT]: {} },
  ...change,
});

beforeAll(async () => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  op = await startTestOp([
    { id: 'gateway', secret: 'gateway-secret-0123456789', redirectUri: `${url}/auth/sso/callback` },
  ]);
  gw = await startTestGateway(
    {
      OIDC_ISSUER: op.issuer,
      OIDC_CLIENT_ID: 'gateway',
      OIDC_CLIENT_SECRET: 'gateway-secret-0123456789',
      PORT: String(port),
    },
    { listen: false },
  );
  await gw.app.listen({ port, host: '127.0.0.1' });
}, 120_000);

afterAll(async () => {
  await gw?.close();
  await op?.close();
});

describe('back-channel logout: the issuer ends the gateway sessions bound to its session', () => {
  describe('refuses a logout token that does not hold (400 invalid_request, audited, the sessions stay)', () => {
    let signedIn: Awaited<ReturnType<typeof signInToBoth>>;
    beforeAll(async () => {
      signedIn = await signInToBoth(ADA);
    });

    const foreignKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const cases: Array<[string, string, (sid: string) => string]> = [
      ['for another client (aud)', 'wrong_audience', (sid) => op.sign(logoutClaims(sid, { aud: 'portal' }))],
      [
        'from another issuer (iss)',
        'wrong_issuer',
        (sid) => op.sign(logoutClaims(sid, { iss: 'https://idp.attacker.example' })),
      ],
      ['with a nonce', 'nonce_present', (sid) => op.sign(logoutClaims(sid, { nonce: 'n-0S6_WzA2Mj' }))],
      ['without an events claim', 'events_missing', (sid) => op.sign(logoutClaims(sid, { events: undefined }))],
      [
        'whose events claim is another event',
        'not_a_logout_event',
        (sid) => op.sign(logoutClaims(sid, { events: { 'https://schemas.example/event/other': {} } })),
      ],
      [
        'signed with a key the issuer does not hold (bad signature)',
        'signature_invalid',
        (sid) => op.sign(logoutClaims(sid), { key: foreignKey }),
      ],
      [
        `issued more than ${LOGOUT_TOKEN_MAX_AGE_S} s (and the clock tolerance) ago`,
        'iat_too_old',
        (sid) =>
          op.sign(logoutClaims(sid, { iat: nowS() - LOGOUT_TOKEN_MAX_AGE_S - CLOCK_TOLERANCE_S - 30, exp: undefined })),
      ],
      [
        'issued in the future',
        'iat_in_future',
        (sid) => op.sign(logoutClaims(sid, { iat: nowS() + CLOCK_TOLERANCE_S + 60 })),
      ],
      [
        'expired',
        'expired',
        (sid) => op.sign(logoutClaims(sid, { iat: nowS() - 100, exp: nowS() - CLOCK_TOLERANCE_S - 10 })),
      ],
      [
        'naming neither sid nor sub',
        'sid_and_sub_missing',
        (sid) => op.sign(logoutClaims(sid, { sid: undefined, sub: undefined })),
      ],
      ['without a jti', 'jti_missing', (sid) => op.sign(logoutClaims(sid, { jti: undefined }))],
      [
        'typed as another kind of JWT',
        'not_a_logout_token',
        (sid) => op.sign(logoutClaims(sid), { header: { typ: 'at+jwt' } }),
      ],
      [
        'unsigned (alg none)',
        'alg_not_allowed',
        (sid) =>
          `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(logoutClaims(sid))).toString('base64url')}.`,
      ],
      ['that is the ID token of the sign-in', 'events_missing', () => signedIn.idToken],
      ['that is no JWT', 'malformed_token', () => 'not.a.jwt'],
    ];

    it.each(cases)('refuses a logout token %s', async (_what, reason, make) => {
      const since = await auditSize();
      const res = await postToken(make(signedIn.sid));
      expect(res.status).toBe(400);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(((await res.json()) as { error: string }).error).toBe('invalid_request');
      expect(
        (await auditSince('sso.backchannel-refused', since)).map((e) => [e.agent?.type, e.detail?.['reason']]),
      ).toEqual([['anonymous', reason]]);
      expect(await auditSince('sso.backchannel-logout', since)).toEqual([]);
      expect(await auditApi(signedIn.auditSession)).toBe(200);
      expect(await consoleWrite(signedIn.operatorSession)).toBe(404);
    });

    it('refuses a replayed logout token (its jti): a new sign-in in that issuer session stays signed in', async () => {
      const first = await signInToBoth(ADA);
      const token = op.sign(logoutClaims(first.sid));
      const since = await auditSize();
      expect((await postToken(token)).status).toBe(200);
      expect(await auditApi(first.auditSession)).toBe(401);
      // Signed in again through the same issuer session (the same sid); then the captured token comes back.
      const again = await signInToBoth(ADA, first.go);
      expect(again.sid).toBe(first.sid);
      const replay = await postToken(token);
      expect(replay.status).toBe(400);
      expect(((await replay.json()) as { error: string }).error).toBe('invalid_request');
      expect((await auditSince('sso.backchannel-logout', since)).map((e) => e.detail?.['sessions'])).toEqual([2]);
      expect((await auditSince('sso.backchannel-refused', since)).map((e) => e.detail?.['reason'])).toEqual([
        'jti_replayed',
      ]);
      expect(await auditApi(again.auditSession)).toBe(200);
      expect(await consoleWrite(again.operatorSession)).toBe(404);
      // A token naming no live session is taken once too.
      const stale = op.sign(logoutClaims('a-session-long-gone', { sub: undefined }));
      expect((await postToken(stale)).status).toBe(200);
      expect((await postToken(stale)).status).toBe(400);
    });

    it('refuses a request that is not a form with one logout_token, and a body far larger than a token', async () => {
      const since = await auditSize();
      expect(
        (await postLogout(JSON.stringify({ logout_token: op.sign(logoutClaims(signedIn.sid)) }), 'application/json'))
          .status,
      ).toBe(400);
      expect((await postLogout('')).status).toBe(400);
      const big = await postLogout(`logout_token=${'a'.repeat(64 * 1024)}`);
      expect([big.status, ((await big.json()) as { error: string }).error]).toEqual([400, 'invalid_request']);
      expect((await auditSince('sso.backchannel-refused', since)).map((e) => e.detail?.['reason'])).toEqual([
        'not_form_encoded',
        'logout_token_missing',
        'payload_too_large',
      ]);
      expect(await consoleWrite(signedIn.operatorSession)).toBe(404);
    });

    it('refuses a control character in the query (the request-values rule), audited as a refusal', async () => {
      const since = await auditSize();
      const res = await fetch(`${gw.url}${BACKCHANNEL_LOGOUT_PATH}?x=%00`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ logout_token: op.sign(logoutClaims(signedIn.sid)) }),
      });
      expect(res.status).toBe(400);
      expect((await auditSince('sso.backchannel-refused', since)).map((e) => e.detail?.['reason'])).toEqual([
        'invalid_value',
      ]);
      expect(await auditApi(signedIn.auditSession)).toBe(200);
    });
  });

  it('a sign-out at the issuer ends both gateway sessions of that issuer session, through its back-channel call', async () => {
    const { go, auditSession, operatorSession, sid, idToken } = await signInToBoth(ADA);
    const other = await signInToBoth(BEN);
    expect(await auditApi(auditSession)).toBe(200);
    expect(await consoleWrite(operatorSession)).toBe(404);
    const since = await auditSize();

    // The person signs out at the issuer itself (as another application of the issuer would send them there).
    const confirm = await go(`${op.issuer}/session/end?id_token_hint=${idToken}`);
    const form = await confirm.res.text();
    const action = /<form [^>]*action="([^"]+)"/.exec(form)?.[1];
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(form)?.[1];
    expect([action, xsrf].every(Boolean)).toBe(true);
    const done = await go.submit(new URL(action!, op.issuer).href, { xsrf: xsrf!, logout: 'yes' });
    expect(done.res.status).toBe(200);

    expect(op.backchannelDeliveries).toContainEqual({ clientId: 'gateway', sub: ADA.sub, sid, ok: true });
    expect([await sessionOf(auditSession), await sessionOf(operatorSession)]).toEqual([undefined, undefined]);
    expect(await auditApi(auditSession)).toBe(401);
    expect(await consoleWrite(operatorSession)).toBe(401);
    expect(await (await fetch(`${gw.url}/console/`, { headers: { cookie: operatorSession } })).text()).toContain(
      'id="sso-login"',
    );
    const [entry, ...more] = await auditSince('sso.backchannel-logout', since);
    expect(more).toEqual([]);
    expect([entry?.agent, entry?.detail]).toEqual([
      { type: 'user', id: 'ada', network: '127.0.0.1' },
      { via: 'sso', by: 'sid', subject: ADA.sub, sessions: 2 },
    ]);
    // Another person's issuer session is not this one: their sessions stay.
    expect(await auditApi(other.auditSession)).toBe(200);
    expect(await sessionOf(other.operatorSession)).toMatchObject({ role: 'operator', sid: other.sid });
  });

  it('a logout token naming only the sub ends every session of that person, in every issuer session', async () => {
    const first = await signInToBoth(BEN);
    const second = await signInToBoth(BEN);
    expect(first.sid).not.toBe(second.sid);
    const open = await liveSessions('ben');
    expect(open).toBeGreaterThanOrEqual(4);
    const since = await auditSize();
    const res = await postToken(op.sign(logoutClaims('', { sid: undefined, sub: BEN.sub })));
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await res.text()).toBe('');
    expect(await liveSessions('ben')).toBe(0);
    expect(await auditApi(first.auditSession)).toBe(401);
    expect(await auditApi(second.auditSession)).toBe(401);
    expect(
      (await auditSince('sso.backchannel-logout', since)).map((e) => [
        e.agent?.id,
        e.detail?.['by'],
        e.detail?.['sessions'],
      ]),
    ).toEqual([['ben', 'sub', open]]);
  });
});

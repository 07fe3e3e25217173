import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addAuditUser, createSession } from '../../src/audit/users.ts';
import { CLOCK_TOLERANCE_S, SSO_PAGES, type SsoPage } from '../../src/auth/sso.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { startTestOp, type IdTokenClaims, type OpAccount, type TestOp } from '../helpers/oidc-op.ts';
import { fetchBrowser as browser } from '../helpers/fetch-browser.ts';
import { freePort } from '../helpers/ports.ts';

const OFFICER: OpAccount = { sub: 'u-1', username: 'olivia', groups: ['gateway-compliance'] };
const OPERATOR: OpAccount = { sub: 'u-2', username: 'omar', groups: ['gateway-operators'] };
const NOBODY: OpAccount = { sub: 'u-3', username: 'nina', groups: ['nurses'] };
const PERSON: Record<SsoPage, OpAccount> = { audit: OFFICER, console: OPERATOR };

let op: TestOp;
let gw: TestGateway;
let other: TestGateway;

async function auditTypes(g: TestGateway, type: string, since = 0) {
  const { rows } = await g.app.ctx.pool.query<{ entry: string }>(
    'SELECT entry FROM audit_log WHERE idx >= $1 AND entry LIKE $2 ORDER BY idx',
    [since, `%"type":"${type}"%`],
  );
  return rows.map((r) => JSON.parse(r.entry) as { agent?: { id: string }; detail?: Record<string, unknown> });
}
const auditSize = async (g: TestGateway) =>
  Number((await g.app.ctx.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_log')).rows[0]!.n);
const sessionCount = async (g: TestGateway) =>
  Number((await g.app.ctx.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_sessions')).rows[0]!.n);
const nowS = () => Math.floor(Date.now() / 1000);

/**
 * Sign in to `page` through the issuer, which hands out the ID token `alter`
 * makes: the gateway must answer a 401 page, audit the reason and create no session.
 */
async function refusedSignIn(page: SsoPage, alter: (claims: IdTokenClaims) => IdTokenClaims, reason: string) {
  op.signInAs(PERSON[page]);
  op.alterNextIdToken(alter);
  const [since, sessions] = [await auditSize(gw), await sessionCount(gw)];
  const go = browser({ html: true });
  const { url, res } = await go(`${gw.url}/auth/sso/login?page=${page}`);
  expect([url.pathname, res.status]).toEqual(['/auth/sso/callback', 401]);
  expect(res.headers.get('content-type')).toMatch(/^text\/html/);
  expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
  const html = await res.text();
  expect(html).toContain('Sign-in refused');
  expect(html).toContain(`<a id="back" href="${SSO_PAGES[page].path}">`);
  // No session: none in the database, no cookie in the browser, and the pending sign-in is spent.
  expect(await sessionCount(gw)).toBe(sessions);
  expect(go.held(gw.url, 'gw_audit_session')).toBe('gw_audit_session=');
  expect(go.held(gw.url, 'gw_sso_pending')).toBe('gw_sso_pending=');
  const refused = await auditTypes(gw, 'sso.refused', since);
  expect(refused.map((e) => [e.agent?.id, e.detail?.['reason'], e.detail?.['page']])).toEqual([
    ['unknown', reason, page],
  ]);
  expect(await auditTypes(gw, 'sso.login', since)).toEqual([]);
}

describe('single sign-on through a real OpenID Provider', () => {
  beforeAll(async () => {
    const [gwPort, otherPort] = [await freePort(), await freePort()];
    const gwUrl = `http://127.0.0.1:${gwPort}`;
    const otherUrl = `http://127.0.0.1:${otherPort}`;
    op = await startTestOp([
      { id: 'gateway', secret: 'gateway-secret-0123456789', redirectUri: `${gwUrl}/auth/sso/callback` },
      { id: 'portal', secret: 'portal-secret-0123456789', redirectUri: `${otherUrl}/auth/sso/callback` },
    ]);
    const sso = { OIDC_ISSUER: op.issuer, OIDC_CLIENT_ID: 'gateway', OIDC_CLIENT_SECRET: 'gateway-secret-0123456789' };
    gw = await startTestGateway({ ...sso, PORT: String(gwPort) }, { listen: false });
    other = await startTestGateway({ ...sso, PORT: String(otherPort) }, { listen: false });
    await gw.app.listen({ port: gwPort, host: '127.0.0.1' });
    await other.app.listen({ port: otherPort, host: '127.0.0.1' });
  }, 120_000);
  afterAll(async () => {
    await gw?.close();
    await other?.close();
    await op?.close();
  });

  it('signs a compliance officer in to /audit/ui with a session the audit page accepts', async () => {
    op.signInAs(OFFICER);
    const go = browser();
    const { url, res } = await go(`${gw.url}/auth/sso/login?page=audit`);
    expect(res.status).toBe(200);
    expect(url.pathname).toBe('/audit/ui/');
    const session = await go(`${gw.url}/audit/ui/session`);
    expect(session.res.status).toBe(200);
    expect(await session.res.json()).toEqual({ user: 'olivia' });
    const [entry] = (await auditTypes(gw, 'sso.login')).filter((e) => e.agent?.id === 'olivia');
    expect(entry?.detail).toMatchObject({ via: 'sso', page: 'audit', role: 'compliance', subject: 'u-1' });
  });

  it('signs an operator in to /console', async () => {
    op.signInAs(OPERATOR);
    const go = browser();
    const { url, res } = await go(`${gw.url}/auth/sso/login?page=console`);
    expect(url.pathname).toBe('/console/');
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('omar');
    // The operator session is not a compliance session: the audit page does not accept it.
    expect((await go(`${gw.url}/audit/ui/session`)).res.status).toBe(401);
  });

  it('refuses a person without the role the page needs (403, audited)', async () => {
    op.signInAs(NOBODY);
    const go = browser();
    const { res } = await go(`${gw.url}/auth/sso/login?page=console`);
    expect(res.status).toBe(403);
    expect(((await res.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');
    const refused = await auditTypes(gw, 'sso.refused');
    expect(refused.some((e) => e.agent?.id === 'nina' && e.detail?.['reason'] === 'missing_role_operator')).toBe(true);
    // An officer is no operator either.
    op.signInAs(OFFICER);
    expect((await browser()(`${gw.url}/auth/sso/login?page=console`)).res.status).toBe(403);
  });

  it('refuses a sign-in the issuer ran for another client (its code is not for this gateway), audited', async () => {
    // The issuer runs the sign-in for client "portal", whose redirect goes to the second gateway,
    // configured as client "gateway": the code and its ID token are not for it.
    op.signInAs(OFFICER);
    const go = browser();
    const start = await go(`${other.url}/auth/sso/login?page=audit`, '/auth');
    const auth = new URL(start.url);
    auth.searchParams.set('client_id', 'portal');
    const { res } = await go(auth.href);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');
    const refused = await auditTypes(other, 'sso.refused');
    // The issuer itself refuses to redeem the other client's code for this client (invalid_grant).
    expect(refused.map((e) => e.detail?.['reason'])).toEqual(['issuer_refused_code']);
    expect(await auditTypes(other, 'sso.login')).toHaveLength(0);
  });

  it('refuses a callback whose state is not the pending sign-in, and one without a pending sign-in', async () => {
    op.signInAs(OFFICER);
    const go = browser();
    const { url } = await go(`${gw.url}/auth/sso/login?page=audit`, '/auth/sso/callback');
    url.searchParams.set('state', 'forged-state');
    const since = await auditSize(gw);
    expect((await go(url.href)).res.status).toBe(401);
    expect((await browser()(url.href)).res.status).toBe(400);
    expect((await auditTypes(gw, 'sso.refused', since)).map((e) => e.detail?.['reason'])).toEqual([
      'state_mismatch',
      'no_pending_sign_in',
    ]);
  });

  it('signs out: the gateway session ends and the issuer end-session URL comes back, naming the page', async () => {
    op.signInAs(OPERATOR);
    const go = browser();
    await go(`${gw.url}/auth/sso/login?page=console`);
    const session = go.held(gw.url, 'gw_audit_session');
    expect((await fetch(`${gw.url}/console/`, { headers: { cookie: session } })).status).toBe(200);
    const out = await fetch(`${gw.url}/auth/sso/logout`, {
      method: 'POST',
      headers: { origin: gw.url, cookie: session, 'content-type': 'application/json' },
      body: JSON.stringify({ page: 'console' }),
    });
    expect(out.status).toBe(200);
    const redirect = new URL(((await out.json()) as { redirect: string }).redirect);
    expect(`${redirect.origin}${redirect.pathname}`).toBe(`${op.issuer}/session/end`);
    expect(redirect.searchParams.get('post_logout_redirect_uri')).toBe(`${gw.url}/auth/sso/signed-out`);
    expect(redirect.searchParams.get('state')).toBe('console');
    expect(await (await fetch(`${gw.url}/console/`, { headers: { cookie: session } })).text()).toContain(
      'id="sso-login"',
    );
    // The issuer sends the browser back to the page the state names (the audit page when it names none).
    const back = await fetch(`${gw.url}/auth/sso/signed-out?state=console`, { redirect: 'manual' });
    expect([back.status, back.headers.get('location')]).toEqual([302, '/console/']);
    const unnamed = await fetch(`${gw.url}/auth/sso/signed-out`, { redirect: 'manual' });
    expect(unnamed.headers.get('location')).toBe('/audit/ui/');
  });

  it('ends a local (break-glass) session without sending the browser to the issuer', async () => {
    await addAuditUser(gw.app.ctx.pool, 'breakglass.bob');
    const { token } = await createSession(gw.app.ctx.pool, 'breakglass.bob');
    const cookie = `gw_audit_session=${token}`;
    expect((await fetch(`${gw.url}/audit/ui/session`, { headers: { cookie } })).status).toBe(200);
    const out = await fetch(`${gw.url}/auth/sso/logout`, { method: 'POST', headers: { origin: gw.url, cookie } });
    expect(await out.json()).toEqual({ redirect: null });
    expect((await fetch(`${gw.url}/audit/ui/session`, { headers: { cookie } })).status).toBe(401);
  });

  it('refuses a cross-site sign-out (CSRF), audited, and the session stays', async () => {
    op.signInAs(OFFICER);
    const go = browser();
    await go(`${gw.url}/auth/sso/login?page=audit`);
    const session = go.held(gw.url, 'gw_audit_session');
    const since = await auditSize(gw);
    const forged = await fetch(`${gw.url}/auth/sso/logout`, {
      method: 'POST',
      headers: { origin: 'https://attacker.example', cookie: session },
    });
    expect(forged.status).toBe(403);
    const form = await fetch(`${gw.url}/auth/sso/logout`, {
      method: 'POST',
      headers: { origin: gw.url, cookie: session, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'page=audit',
    });
    expect(form.status).toBe(415);
    expect((await auditTypes(gw, 'authz.denied', since)).map((e) => e.detail?.['reason'])).toEqual([
      'cross_origin',
      'not_json',
    ]);
    expect((await fetch(`${gw.url}/audit/ui/session`, { headers: { cookie: session } })).status).toBe(200);
  });

  it('tells both pages that single sign-on is on and the local sign-in off', async () => {
    const options = await fetch(`${gw.url}/audit/ui/sign-in`);
    expect(await options.json()).toEqual({ sso: true, local: false, signOut: '/auth/sso/logout' });
    const html = await (await fetch(`${gw.url}/console/`)).text();
    expect(html).toContain('<a id="sso-login" class="sso" href="/auth/sso/login?page=console">Sign in with SSO</a>');
    expect(html).not.toContain('id="login-form"');
  });

  it(`takes an ID token that expired within the ${CLOCK_TOLERANCE_S} s clock tolerance`, async () => {
    op.signInAs(OFFICER);
    op.alterNextIdToken((c) => ({ ...c, iat: nowS() - 300, exp: nowS() - 5 }));
    const { url, res } = await browser()(`${gw.url}/auth/sso/login?page=audit`);
    expect([res.status, url.pathname]).toEqual([200, '/audit/ui/']);
  });

  describe.each(['audit', 'console'] as const)('an ID token the %s page must refuse', (page) => {
    it(`refuses an ID token expired beyond the clock tolerance (401 page, audited id_token_expired)`, async () => {
      const exp = nowS() - CLOCK_TOLERANCE_S - 60;
      await refusedSignIn(page, (c) => ({ ...c, iat: exp - 300, exp }), 'id_token_expired');
    });

    it('refuses an ID token minted for another sign-in (wrong nonce; 401 page, audited id_token_wrong_nonce)', async () => {
      await refusedSignIn(page, (c) => ({ ...c, nonce: 'the-nonce-of-another-sign-in' }), 'id_token_wrong_nonce');
    });
  });

  it('refuses an ID token for another client or from another issuer, each with its reason', async () => {
    await refusedSignIn('audit', (c) => ({ ...c, aud: 'portal' }), 'id_token_wrong_audience');
    await refusedSignIn('audit', (c) => ({ ...c, iss: 'https://idp.attacker.example' }), 'id_token_wrong_issuer');
  });

  it('turns the local sign-in off when an issuer is configured', async () => {
    const res = await fetch(`${gw.url}/audit/ui/login`, {
      method: 'POST',
      headers: { origin: gw.url, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'someone', password: 'whatever' }),
    });
    expect(res.status).toBe(403);
  });
});

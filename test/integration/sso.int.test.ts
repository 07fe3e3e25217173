import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { startTestOp, type OpAccount, type TestOp } from '../helpers/oidc-op.ts';
import { freePort } from '../helpers/ports.ts';

const OFFICER: OpAccount = { sub: 'u-1', username: 'olivia', groups: ['gateway-compliance'] };
const OPERATOR: OpAccount = { sub: 'u-2', username: 'omar', groups: ['gateway-operators'] };
const NOBODY: OpAccount = { sub: 'u-3', username: 'nina', groups: ['nurses'] };

let op: TestOp;
let gw: TestGateway;
let other: TestGateway;

/** A tiny browser: follows redirects by hand and keeps each host's cookies. */
function browser() {
  const jars = new Map<string, Map<string, string>>();
  const jar = (url: URL) => jars.get(url.host) ?? jars.set(url.host, new Map()).get(url.host)!;
  const go = async function (start: string, stopAt?: string): Promise<{ url: URL; res: Response }> {
    let url = new URL(start);
    for (let hop = 0; hop < 15; hop++) {
      const cookies = [...jar(url)].map(([k, v]) => `${k}=${v}`).join('; ');
      const res = await fetch(url, { redirect: 'manual', headers: cookies ? { cookie: cookies } : {} });
      for (const line of res.headers.getSetCookie()) {
        const [pair, ...attrs] = line.split(';');
        const [k, ...v] = pair!.split('=');
        if (attrs.some((a) => /max-age=0/i.test(a.trim()))) jar(url).delete(k!.trim());
        else jar(url).set(k!.trim(), v.join('='));
      }
      const location = res.headers.get('location');
      if (res.status < 300 || res.status >= 400 || !location) return { url, res };
      url = new URL(location, url);
      if (stopAt && url.pathname === stopAt) return { url, res };
    }
    throw new Error('too many redirects');
  };
  /** A cookie this browser holds for a host, as a Cookie header. */
  const held = (base: string, name: string) => `${name}=${jar(new URL(base)).get(name) ?? ''}`;
  return Object.assign(go, { held });
}

async function auditTypes(g: TestGateway, type: string) {
  const { rows } = await g.app.ctx.pool.query<{ entry: string }>(
    'SELECT entry FROM audit_log WHERE entry LIKE $1 ORDER BY idx',
    [`%"type":"${type}"%`],
  );
  return rows.map((r) => JSON.parse(r.entry) as { agent?: { id: string }; detail?: Record<string, unknown> });
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
    expect(refused.map((e) => e.detail?.['reason'])).toEqual(['OAUTH_RESPONSE_BODY_ERROR']);
    expect(await auditTypes(other, 'sso.login')).toHaveLength(0);
  });

  it('refuses a callback whose state is not the pending sign-in, and one without a pending sign-in', async () => {
    op.signInAs(OFFICER);
    const go = browser();
    const { url } = await go(`${gw.url}/auth/sso/login?page=audit`, '/auth/sso/callback');
    url.searchParams.set('state', 'forged-state');
    expect((await go(url.href)).res.status).toBe(401);
    expect((await browser()(url.href)).res.status).toBe(400);
  });

  it('signs out: the gateway session ends and the issuer end-session URL comes back', async () => {
    op.signInAs(OFFICER);
    const go = browser();
    await go(`${gw.url}/auth/sso/login?page=audit`);
    const { res: probe } = await go(`${gw.url}/audit/ui/session`);
    expect(probe.status).toBe(200);
    const session = go.held(gw.url, 'gw_audit_session');
    const out = await fetch(`${gw.url}/auth/sso/logout`, {
      method: 'POST',
      headers: { origin: gw.url, cookie: session },
    });
    expect(out.status).toBe(200);
    const { redirect } = (await out.json()) as { redirect: string };
    expect(redirect.startsWith(`${op.issuer}/session/end`)).toBe(true);
    const after = await fetch(`${gw.url}/audit/ui/session`, { headers: { cookie: session } });
    expect(after.status).toBe(401);
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

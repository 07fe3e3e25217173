import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, type TestBrowser } from '../helpers/browser.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { startTestOp, type OpAccount, type TestOp } from '../helpers/oidc-op.ts';
import { freePort } from '../helpers/ports.ts';

const OFFICER: OpAccount = { sub: 'olivia', username: 'olivia', groups: ['gateway-compliance'] };
const OPERATOR: OpAccount = { sub: 'omar', username: 'omar', groups: ['gateway-operators'] };

let op: TestOp;
let gw: TestGateway;
let chrome: TestBrowser | undefined;
let page: Page;

const liveSessions = async (name: string) =>
  Number(
    (
      await gw.app.ctx.pool.query<{ n: string }>(
        'SELECT count(*) AS n FROM audit_sessions WHERE user_name = $1 AND expires_at > now()',
        [name],
      )
    ).rows[0]!.n,
  );

/** At the provider's own login and consent pages (oidc-provider's development interactions). */
async function signInAtIssuer(account: OpAccount) {
  await page.waitForURL((url) => url.origin === op.issuer && url.pathname.startsWith('/interaction/'));
  await page.fill('input[name=login]', account.sub);
  await page.fill('input[name=password]', 'any password: the development login takes any');
  await page.click('button[type=submit]');
  await page.locator('button[type=submit]', { hasText: 'Continue' }).click();
}

/** At the provider's end-session page, which asks before it signs the person out. */
async function signOutAtIssuer(at: Page = page) {
  await at.waitForURL((url) => url.origin === op.issuer && url.pathname.startsWith('/session/end'));
  await at.locator('button', { hasText: 'Yes, sign me out' }).click();
}

beforeAll(async () => {
  // The gateway's port first: its callback is registered at the issuer before the gateway exists.
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  op = await startTestOp([
    { id: 'gateway', secret: 'gateway-secret-0123456789', redirectUri: `${url}/auth/sso/callback` },
  ]);
  op.addAccount(OFFICER);
  op.addAccount(OPERATOR);
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
  chrome = await launchChromium('sso');
  page = chrome.page;
  // Nothing beyond loopback (the provider's development pages name a web font).
  await chrome.browser.route(/^https?:\/\/(?!127\.0\.0\.1[:/]|localhost[:/])/, (route) => route.abort());
}, 120_000);

afterAll(async () => {
  await chrome?.close();
  await gw?.close();
  await op?.close();
});

describe('single sign-on in headless Chromium against a real OpenID Provider', () => {
  it('signs an operator in to /console through the issuer, shows the name, and signs out at both', async () => {
    await page.goto(`${gw.url}/console`);
    await page.locator('#sso-login').waitFor({ state: 'visible' });
    // LOCAL_LOGIN is off by default with an issuer: no password form.
    expect(await page.locator('#login-form').count()).toBe(0);
    await page.click('#sso-login');
    await signInAtIssuer(OPERATOR);
    await page.locator('#deliveries').waitFor({ state: 'visible' });
    expect(new URL(page.url()).pathname).toBe('/console/');
    await expect(page.locator('#who').textContent()).resolves.toBe('omar');
    const session = (await chrome!.browser.cookies(gw.url)).find((c) => c.name === 'gw_audit_session');
    expect([session?.httpOnly, session?.sameSite]).toEqual([true, 'Strict']);
    expect(await liveSessions('omar')).toBe(1);

    await page.click('#logout');
    await signOutAtIssuer();
    // The issuer sends the browser back to the console, signed out there too.
    await page.waitForURL(`${gw.url}/console/`);
    await page.locator('#sso-login').waitFor({ state: 'visible' });
    expect(await liveSessions('omar')).toBe(0);
    await page.reload();
    await page.locator('#sso-login').waitFor({ state: 'visible' });
    expect(await page.locator('#who').count()).toBe(0);
    // Signed out at the issuer as well: signing in again asks for the login there.
    await page.click('#sso-login');
    await page.locator('input[name=login]').waitFor({ state: 'visible' });
    expect(chrome!.pageErrors).toEqual([]);
  });

  it('shows a refused sign-in as a page with the way back (an expired ID token), and no session', async () => {
    // The issuer hands out an ID token that expired ten minutes ago, for the sign-in the test before started.
    op.alterNextIdToken((c) => ({ ...c, iat: c.iat - 900, exp: c.iat - 600 }));
    await signInAtIssuer(OPERATOR);
    await page.locator('#sso-refused').waitFor({ state: 'visible' });
    await expect(page.locator('#refusal').textContent()).resolves.toContain('could not be verified');
    expect(await liveSessions('omar')).toBe(0);
    await page.click('#back');
    await page.locator('#sso-login').waitFor({ state: 'visible' });
    expect(chrome!.pageErrors).toEqual([]);
  });

  it('signs a compliance officer in to /audit/ui through the issuer, and out again', async () => {
    await page.goto(`${gw.url}/audit/ui/`);
    await page.locator('#sso-login').waitFor({ state: 'visible' });
    expect(await page.locator('#login-form').isVisible()).toBe(false);
    // Another person at another browser: the operator's issuer session from the test before is not theirs.
    await chrome!.browser.clearCookies();
    await page.click('#sso-login a');
    await signInAtIssuer(OFFICER);
    await page.locator('#main-view').waitFor({ state: 'visible' });
    await expect.poll(() => page.locator('#who').textContent()).toBe('Signed in as olivia');
    await page.locator('#events tbody tr').first().waitFor();
    expect(await liveSessions('olivia')).toBe(1);

    await page.click('#logout');
    await signOutAtIssuer();
    await page.waitForURL(`${gw.url}/audit/ui/`);
    await page.locator('#sso-login').waitFor({ state: 'visible' });
    expect(await liveSessions('olivia')).toBe(0);
    await page.reload();
    await page.locator('#login-view').waitFor({ state: 'visible' });
    expect(await page.locator('#main-view').isVisible()).toBe(false);
    expect(chrome!.pageErrors).toEqual([]);
  });

  it('a sign-out at the issuer in another tab ends the gateway session too (back-channel logout)', async () => {
    await page.goto(`${gw.url}/audit/ui/`);
    await page.click('#sso-login a');
    await signInAtIssuer(OFFICER);
    await page.locator('#main-view').waitFor({ state: 'visible' });
    const session = (await chrome!.browser.cookies(gw.url)).find((c) => c.name === 'gw_audit_session');
    const cookie = `gw_audit_session=${session?.value}`;
    const auditApi = async () => (await fetch(`${gw.url}/fhir/AuditEvent?_count=1`, { headers: { cookie } })).status;
    expect(await auditApi()).toBe(200);

    // The person signs out at the issuer itself, in another tab, never touching the gateway's sign-out.
    const sent = op.backchannelDeliveries.length;
    const tab = await chrome!.browser.newPage();
    await tab.goto(`${op.issuer}/session/end?id_token_hint=${op.idTokens.at(-1)}`);
    await signOutAtIssuer(tab);
    await tab.waitForURL((url) => url.pathname === '/session/end/success');
    await tab.close();

    expect(op.backchannelDeliveries.slice(sent)).toEqual([expect.objectContaining({ clientId: 'gateway', ok: true })]);
    expect(await liveSessions('olivia')).toBe(0);
    expect(await auditApi()).toBe(401);
    await page.reload();
    await page.locator('#login-view').waitFor({ state: 'visible' });
    expect(await page.locator('#main-view').isVisible()).toBe(false);
    expect(chrome!.pageErrors).toEqual([]);
  });
});

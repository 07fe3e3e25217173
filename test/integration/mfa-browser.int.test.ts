import QRCode from 'qrcode';
import request from 'supertest';
import type { BrowserContext, CDPSession, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, type TestBrowser } from '../helpers/browser.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/ports.ts';
import { addAuditUser } from '../../src/audit/users.ts';
import { hotp, otpauthUri, timeStep } from '../../src/mfa/totp.ts';

// The gateway says it is http://localhost:PORT (the relying party id is "localhost", a secure context
// for WebAuthn in Chromium); a second origin on another port plays the phishing site.
let gw: TestGateway;
let base: string;
let elsewhere: string;
let chrome: TestBrowser | undefined;
let browser: BrowserContext;
let page: Page;
let pageErrors: string[] = [];
let cdp: CDPSession;
let authenticatorId: string;
const passwords: Record<string, string> = {};

interface Entry {
  type: string;
  agent?: { id: string };
  detail?: Record<string, unknown>;
}
async function auditSince(since: number, type: string): Promise<Entry[]> {
  const { rows } = await gw.app.ctx.pool.query<{ entry: string }>(
    'SELECT entry FROM audit_log WHERE idx >= $1 ORDER BY idx',
    [since],
  );
  return rows.map((r) => JSON.parse(r.entry) as Entry).filter((e) => e.type === type);
}
const auditSize = async () =>
  Number((await gw.app.ctx.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_log')).rows[0]!.n);
const sessionCookie = async () => {
  const c = (await browser.cookies()).find((k) => k.name === 'gw_audit_session');
  return c ? `gw_audit_session=${c.value}` : '';
};

async function passwordSignIn(name: string): Promise<void> {
  await page.goto(`${base}/audit/ui/`);
  await page.locator('#login-view').waitFor({ state: 'visible' });
  await page.fill('#login-name', name);
  await page.fill('#login-password', passwords[name]!);
  await page.click('#login-form button[type=submit]');
}

async function expectAuditPage(name: string): Promise<void> {
  await page.locator('#main-view').waitFor({ state: 'visible' });
  await expect.poll(() => page.locator('#who').textContent()).toContain(name);
}

beforeAll(async () => {
  const port = await freePort();
  base = `http://localhost:${port}`;
  elsewhere = `http://localhost:${await freePort()}`;
  gw = await startTestGateway({ PORT: String(port), PUBLIC_URL: base, MFA_REQUIRED: 'on' }, { listen: false });
  await gw.app.listen({ port, host: '127.0.0.1' });
  for (const name of ['officer.pat', 'officer.tess']) passwords[name] = await addAuditUser(gw.app.ctx.pool, name);
  chrome = await launchChromium('mfa');
  ({ browser, page, pageErrors } = chrome);
  // Chromium's virtual authenticator: a platform authenticator with user verification (a PIN or biometric, passed).
  cdp = await browser.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  ({ authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  }));
  // The other origin serves one empty page, straight from the browser's network layer.
  await page.route(`${elsewhere}/**`, (route) =>
    route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>elsewhere</title><p>elsewhere</p>' }),
  );
}, 120_000);

afterAll(async () => {
  await chrome?.close();
  await gw?.close();
});

describe('passkeys in headless Chromium (virtual authenticator, user verification)', () => {
  let credentialId: string;

  it('after the first password sign-in, MFA_REQUIRED allows enrolment only; a passkey is registered and the recovery codes shown once', async () => {
    const since = await auditSize();
    await passwordSignIn('officer.pat');
    await page.waitForURL(`${base}/auth/mfa/`);
    await page.locator('#enrol-required').waitFor({ state: 'visible' });
    await page.click('#add-passkey');
    await page.locator('#recovery-codes').waitFor({ state: 'visible' });
    const codes = await page.locator('#recovery-code-list li').allTextContents();
    expect(codes).toHaveLength(10);
    for (const code of codes) expect(code).toMatch(/^[A-Z2-7]{4}(-[A-Z2-7]{4}){3}$/);
    await page.click('#recovery-codes-saved');
    await expectAuditPage('officer.pat');

    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    expect(credentials).toHaveLength(1);
    expect(credentials[0]!.isResidentCredential).toBe(true);
    credentialId = credentials[0]!.credentialId.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    const { rows } = await gw.app.ctx.pool.query<{ credential_id: string; public_key: Buffer; sign_count: string }>(
      "SELECT credential_id, public_key, sign_count FROM mfa_passkeys WHERE user_name = 'officer.pat'",
    );
    expect(rows.map((r) => r.credential_id)).toEqual([credentialId]);
    // A COSE public key, nothing more (the private key is in the authenticator): EC2 (kty 2), ES256 (alg -7).
    expect(rows[0]!.public_key.subarray(0, 5).toString('hex')).toBe('a501020326');
    expect(rows[0]!.public_key.length).toBeLessThan(100);

    const enrolled = await auditSince(since, 'auth.factor-enrolled');
    expect(enrolled.map((e) => [e.agent?.id, e.detail?.factor])).toEqual([
      ['officer.pat', 'passkey'],
      ['officer.pat', 'recovery-codes'],
    ]);
    const logins = await auditSince(since, 'compliance.login');
    expect(logins.map((e) => [e.agent?.id, e.detail?.factors])).toEqual([['officer.pat', 'password+passkey']]);
    // The codes are stored hashed: none of them appears in the database.
    const stored = await gw.app.ctx.pool.query<{ code_hash: Buffer }>(
      "SELECT code_hash FROM mfa_recovery_codes WHERE user_name = 'officer.pat'",
    );
    expect(stored.rows).toHaveLength(10);
    for (const r of stored.rows) expect(r.code_hash).toHaveLength(32);
  });

  it('signs out, then signs in with the passkey alone (it verifies the person), and the counter moves on', async () => {
    const since = await auditSize();
    await page.click('#logout');
    await page.locator('#login-view').waitFor({ state: 'visible' });
    await page.click('#passkey-sign-in-link a');
    await page.waitForURL(`${base}/auth/mfa/`);
    await page.click('#passkey-sign-in-button');
    await expectAuditPage('officer.pat');
    const logins = await auditSince(since, 'compliance.login');
    expect(logins.map((e) => [e.agent?.id, e.detail?.factors])).toEqual([['officer.pat', 'passkey']]);
    const used = await auditSince(since, 'auth.factor-used');
    expect(used.map((e) => e.detail?.factor)).toEqual(['passkey']);
    const { rows } = await gw.app.ctx.pool.query<{ sign_count: string; last_used_at: Date | null }>(
      'SELECT sign_count, last_used_at FROM mfa_passkeys WHERE credential_id = $1',
      [credentialId],
    );
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    expect(Number(rows[0]!.sign_count)).toBe(credentials[0]!.signCount);
    expect(Number(rows[0]!.sign_count)).toBeGreaterThan(0);
    expect(rows[0]!.last_used_at).not.toBeNull();
  });

  it('after a password, uses the passkey as the second factor', async () => {
    const since = await auditSize();
    await page.click('#logout');
    await page.locator('#login-view').waitFor({ state: 'visible' });
    await passwordSignIn('officer.pat');
    await page.waitForURL(`${base}/auth/mfa/`);
    await page.click('#use-passkey');
    await expectAuditPage('officer.pat');
    const logins = await auditSince(since, 'compliance.login');
    expect(logins.map((e) => e.detail?.factors)).toEqual(['password+passkey']);
    const passwordStep = await auditSince(since, 'auth.factor-used');
    expect(passwordStep.map((e) => [e.detail?.factor, e.detail?.next ?? null])).toEqual([
      ['password', 'second-factor'],
      ['passkey', null],
    ]);
    expect(pageErrors).toEqual([]);
  });

  it('refuses, server-side and audited, an assertion made for another origin and relayed to the gateway', async () => {
    await page.click('#logout');
    await page.locator('#login-view').waitFor({ state: 'visible' });
    await passwordSignIn('officer.pat');
    await page.waitForURL(`${base}/auth/mfa/`);
    const pending = await sessionCookie();
    // The phishing site asks the gateway for a challenge with the victim's pending session...
    const options = await request(gw.app.server)
      .post('/auth/mfa/passkey/authentication-options')
      .set('Origin', base)
      .set('Cookie', pending)
      .send({})
      .expect(200);
    expect(options.body.rpId).toBe('localhost');
    expect(options.body.userVerification).toBe('required');
    // ...has the browser answer it on its own origin (same RP id, another origin)...
    await page.goto(`${elsewhere}/`);
    const assertion = await page.evaluate(async (o) => {
      const bytes = (s: string) =>
        Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/') + '=='.slice(0, (4 - (s.length % 4)) % 4)), (c) =>
          c.charCodeAt(0),
        );
      const b64 = (b: ArrayBuffer) =>
        btoa(String.fromCharCode(...new Uint8Array(b)))
          .replace(/\+/g, '-')
          .replace(/\//g, '_')
          .replace(/=+$/, '');
      // The test's type check knows no DOM: just the parts of the WebAuthn API used here.
      type Assertion = {
        id: string;
        rawId: ArrayBuffer;
        type: string;
        response: { clientDataJSON: ArrayBuffer; authenticatorData: ArrayBuffer; signature: ArrayBuffer };
      };
      const webauthn = (navigator as unknown as { credentials: { get(o: object): Promise<Assertion> } }).credentials;
      const cred = await webauthn.get({
        publicKey: {
          challenge: bytes(o.challenge),
          rpId: o.rpId,
          userVerification: 'required',
          allowCredentials: o.allowCredentials.map((c: { id: string }) => ({ type: 'public-key', id: bytes(c.id) })),
        },
      });
      const r = cred.response;
      return {
        origin: JSON.parse(new TextDecoder().decode(r.clientDataJSON)).origin as string,
        body: {
          id: cred.id,
          rawId: b64(cred.rawId),
          type: cred.type,
          clientExtensionResults: {},
          response: {
            clientDataJSON: b64(r.clientDataJSON),
            authenticatorData: b64(r.authenticatorData),
            signature: b64(r.signature),
          },
        },
      };
    }, options.body);
    expect(assertion.origin).toBe(elsewhere);
    // ...and relays it with the gateway's own Origin header: the signed client data still names the other origin.
    const since = await auditSize();
    const relayed = await request(gw.app.server)
      .post('/auth/mfa/passkey/authentication')
      .set('Origin', base)
      .set('Cookie', pending)
      .send(assertion.body);
    expect(relayed.status).toBe(401);
    expect(relayed.body.resourceType).toBe('OperationOutcome');
    expect(relayed.headers['set-cookie']).toBeUndefined();
    const failed = await auditSince(since, 'auth.factor-failed');
    expect(failed.map((e) => [e.agent?.id, e.detail?.factor, e.detail?.reason])).toEqual([
      ['officer.pat', 'passkey', 'wrong_origin'],
    ]);
    // The session is still only pending: nothing but the second-factor step.
    const probe = await request(gw.app.server).get('/audit/ui/session').set('Cookie', pending);
    expect(probe.status).toBe(403);
    expect(probe.body.issue[0].details.coding[0].code).toBe('SECOND_FACTOR_REQUIRED');
  });

  it('refuses a passkey whose signature counter went backwards (a cloned authenticator)', async () => {
    await browser.clearCookies();
    await gw.app.ctx.pool.query('UPDATE mfa_passkeys SET sign_count = 1000000 WHERE credential_id = $1', [
      credentialId,
    ]);
    const since = await auditSize();
    await page.goto(`${base}/auth/mfa/`);
    await page.click('#passkey-sign-in-button');
    await expect.poll(() => page.locator('#mfa-error').textContent()).toContain('could not be verified');
    const failed = await auditSince(since, 'auth.factor-failed');
    expect(failed.map((e) => [e.agent?.id, e.detail?.reason])).toEqual([['officer.pat', 'counter_not_increased']]);
    expect(await sessionCookie()).toBe('');
  });
});

describe('TOTP in headless Chromium', () => {
  const name = 'officer.tess';
  let secret: Buffer;
  const currentStep = () => timeStep(new Date());
  const lastStep = async () =>
    Number(
      (
        await gw.app.ctx.pool.query<{ last_step: string }>('SELECT last_step FROM mfa_totp WHERE user_name = $1', [
          name,
        ])
      ).rows[0]!.last_step,
    );

  it('enrols an authenticator app: a QR code drawn on the server, active once a first code confirms it', async () => {
    await browser.clearCookies();
    const since = await auditSize();
    await passwordSignIn(name);
    await page.waitForURL(`${base}/auth/mfa/`);
    await page.click('#start-totp');
    await page.locator('#totp-qr svg').waitFor({ state: 'visible' });
    const key = (await page.locator('#totp-key').textContent())!.replace(/\s/g, '');
    expect(key).toMatch(/^[A-Z2-7]{32}$/);
    secret = base32Decode(key);
    // The page's QR code is the otpauth URI of exactly this key, rendered by the gateway (no script, no CDN).
    const html = await request(gw.app.server)
      .get('/auth/mfa/')
      .set('Cookie', await sessionCookie())
      .expect(200);
    const uri = otpauthUri(`FHIR gateway ${new URL(base).host}`, name, secret);
    expect(html.text).toContain(await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 }));
    expect(html.headers['content-security-policy']).toContain("script-src 'self'");
    // Not active until confirmed: a password still reaches enrolment only.
    const unconfirmed = await gw.app.ctx.pool.query('SELECT confirmed_at FROM mfa_totp WHERE user_name = $1', [name]);
    expect(unconfirmed.rows[0].confirmed_at).toBeNull();
    await page.fill('#totp-confirm-code', '000000' === hotp(secret, currentStep()) ? '111111' : '000000');
    await page.click('#totp-confirm-form button[type=submit]');
    await expect.poll(() => page.locator('#mfa-error').textContent()).toContain('does not match');
    await page.fill('#totp-confirm-code', hotp(secret, currentStep()));
    await page.click('#totp-confirm-form button[type=submit]');
    await page.locator('#recovery-codes').waitFor({ state: 'visible' });
    expect(await page.locator('#recovery-code-list li').count()).toBe(10);
    await page.click('#recovery-codes-saved');
    await expectAuditPage(name);
    const enrolled = await auditSince(since, 'auth.factor-enrolled');
    expect(enrolled.map((e) => [e.agent?.id, e.detail?.factor])).toEqual([
      [name, 'totp'],
      [name, 'recovery-codes'],
    ]);
    const failed = await auditSince(since, 'auth.factor-failed');
    expect(failed.map((e) => [e.detail?.factor, e.detail?.during, e.detail?.reason])).toEqual([
      ['totp', 'enrolment', 'wrong_code'],
    ]);
  });

  let used: string;

  it('signs in with a code computed from the secret', async () => {
    await browser.clearCookies();
    const since = await auditSize();
    await passwordSignIn(name);
    await page.waitForURL(`${base}/auth/mfa/`);
    // A code of a later step than the confirmation's (within the ±1 step the gateway allows).
    used = hotp(secret, Math.max((await lastStep()) + 1, currentStep()));
    await page.fill('#totp-code', used);
    await page.click('#totp-form button[type=submit]');
    await expectAuditPage(name);
    const logins = await auditSince(since, 'compliance.login');
    expect(logins.map((e) => [e.agent?.id, e.detail?.factors])).toEqual([[name, 'password+totp']]);
  });

  it('refuses the same code again, and a wrong code, each audited with the reason', async () => {
    await browser.clearCookies();
    await passwordSignIn(name);
    await page.waitForURL(`${base}/auth/mfa/`);
    const since = await auditSize();
    await page.fill('#totp-code', used);
    await page.click('#totp-form button[type=submit]');
    await expect.poll(() => page.locator('#mfa-error').textContent()).toContain('wrong or already used code');
    const now = currentStep();
    const window = new Set([now - 1, now, now + 1].map((s) => hotp(secret, s)));
    const wrong = ['123456', '654321', '000000'].find((c) => !window.has(c))!;
    await page.fill('#totp-code', wrong);
    await page.click('#totp-form button[type=submit]');
    await expect
      .poll(async () => (await auditSince(since, 'auth.factor-failed')).map((e) => [e.agent?.id, e.detail?.reason]))
      .toEqual([
        [name, 'code_reused'],
        [name, 'wrong_code'],
      ]);
    expect(page.url()).toBe(`${base}/auth/mfa/`);
    const probe = await request(gw.app.server)
      .get('/fhir/AuditEvent')
      .set('Cookie', await sessionCookie());
    expect(probe.status).toBe(403);
    expect(pageErrors).toEqual([]);
  });
});

function base32Decode(text: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  return Buffer.from(bits.match(/.{8}/g)!.map((b) => parseInt(b, 2)));
}

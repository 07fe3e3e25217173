import pg from 'pg';
import type { BrowserContext, Page } from 'playwright-core';
import { launchChromium, type TestBrowser } from '../helpers/browser.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit } from '../../src/audit/append.ts';
import { addAuditUser } from '../../src/audit/users.ts';
import { inTransaction } from '../../src/db/pool.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gw: TestGateway;
let browser: BrowserContext;
let page: Page;
let password: string;
let pageErrors: string[] = [];
let chrome: TestBrowser | undefined;

beforeAll(async () => {
  gw = await startTestGateway();
  await inTransaction(gw.app.ctx.pool, (c) =>
    appendAudit(
      c,
      Array.from(
        { length: 12 },
        (_, i) =>
          ({
            type: i % 2 ? 'delivery.attempt' : 'intake.accepted',
            outcome: i === 5 ? 'serious-failure' : 'success',
            agent: { type: 'client', id: `ehr-${i % 3}` },
            entity: [{ type: 'exchange', id: `ex-${i}`, digest: `sha256:${String(i).padStart(64, '0')}` }],
          }) as const,
      ),
    ),
  );
  password = await addAuditUser(gw.app.ctx.pool, 'officer.jane');
  chrome = await launchChromium('audit-ui');
  ({ browser, page, pageErrors } = chrome);
}, 120_000);

afterAll(async () => {
  await chrome?.close();
  await gw?.close();
});

describe('compliance officer page /audit/ui in headless Chromium', () => {
  it('refuses a wrong password, then signs in with the compliance account', async () => {
    await page.goto(`${gw.url}/audit/ui`);
    await page.locator('#login-view').waitFor({ state: 'visible' });
    await page.fill('#login-name', 'officer.jane');
    await page.fill('#login-password', 'not-the-password');
    await page.click('#login-form button[type=submit]');
    await expect.poll(() => page.locator('#login-error').textContent()).toContain('Sign-in failed');
    await page.fill('#login-password', password);
    await page.click('#login-form button[type=submit]');
    await page.locator('#main-view').waitFor({ state: 'visible' });
    expect(pageErrors).toEqual([]); // no uncaught script errors
    await expect.poll(() => page.locator('#who').textContent()).toContain('officer.jane');
    const cookies = await browser.cookies();
    const session = cookies.find((c) => c.name === 'gw_audit_session')!;
    expect(session.httpOnly).toBe(true);
    expect(session.sameSite).toBe('Strict');
  });

  it('lists and filters events, opens one and shows its proof verified in the browser', async () => {
    await page.locator('#events tbody tr').first().waitFor();
    expect(await page.locator('#events tbody tr').count()).toBeGreaterThanOrEqual(12);
    await page.fill('#f-entity', 'ex-5');
    await page.click('#filter button[type=submit]');
    await expect.poll(() => page.locator('#events tbody tr').count()).toBe(1);
    await expect(page.locator('#events tbody tr td').nth(3).textContent()).resolves.toBe('serious failure');
    await page.locator('#events tbody tr').first().click();
    await expect
      .poll(() => page.locator('#proof-status').textContent(), { timeout: 15_000 })
      .toContain('Proven: entry');
  });

  it('verifies the whole trail, then raises a tamper alert after a row is altered in the database', async () => {
    await page.click('#verify-trail');
    await page.locator('#verified').waitFor({ state: 'visible', timeout: 15_000 });
    await expect(page.locator('#verified').textContent()).resolves.toContain('Trail verified');
    expect(await page.locator('#tamper-alert').isVisible()).toBe(false);

    // An attacker with database superuser rights: drop the guard, rewrite history.
    const { rows } = await gw.app.ctx.pool.query<{ idx: string }>(
      `SELECT idx FROM audit_log WHERE entry LIKE '%"ex-5"%'`,
    );
    const idx = Number(rows[0]!.idx);
    const admin = new pg.Client({ connectionString: gw.databaseUrl });
    await admin.connect();
    try {
      await admin.query('ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update');
      await admin.query(
        `UPDATE audit_log SET entry = replace(entry, 'serious-failure', 'success'), outcome = 'success' WHERE idx = $1`,
        [idx],
      );
      await admin.query('ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update');
    } finally {
      await admin.end();
    }
    await page.click('#verify-trail');
    await page.locator('#tamper-alert').waitFor({ state: 'visible', timeout: 15_000 });
    const alert = await page.locator('#tamper-alert').textContent();
    expect(alert).toContain('Tamper alert');
    expect(alert).toContain(`(changed) at entry ${idx}`);
    expect(await page.locator('#verified').isVisible()).toBe(false);
  });

  it('signs out through the page: the sign-out POST passes the same-origin check and ends the session', async () => {
    const session = (await browser.cookies()).find((c) => c.name === 'gw_audit_session')!;
    await page.click('#logout');
    await page.locator('#login-view').waitFor({ state: 'visible' });
    const probe = await fetch(`${gw.url}/audit/ui/session`, {
      headers: { cookie: `gw_audit_session=${session.value}` },
    });
    expect(probe.status).toBe(401);
    expect(pageErrors).toEqual([]);
  });
});

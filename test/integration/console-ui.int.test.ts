import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { launchChromium, type TestBrowser } from '../helpers/browser.ts';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addAuditUser } from '../../src/audit/users.ts';
import { messageBundle, startOutbound, waitFor, type Outbound } from '../helpers/outbound.ts';

// SCREENSHOTS=1 writes docs/screenshots/console.png and audit-ui.png from this run.
const SCREENSHOTS = process.env.SCREENSHOTS === '1';
const SHOTS = join(import.meta.dirname, '..', '..', 'docs', 'screenshots');

let o: Outbound;
let page: Page;
let operatorPassword: string;
let officerPassword: string;
let deliveryId: string;
let pageErrors: string[] = [];
let chrome: TestBrowser | undefined;

const deliveryState = async (id: string) =>
  (await o.gw.app.ctx.pool.query<{ state: string }>('SELECT state FROM deliveries WHERE id = $1', [id])).rows[0]?.state;

/** A session cookie for `name`, signed in through the audit page's sign-in route. */
async function signIn(name: string, password: string): Promise<string> {
  const res = await request(o.gw.app.server)
    .post('/audit/ui/login')
    .set('Origin', o.gw.url)
    .send({ name, password })
    .expect(200);
  return String(res.headers['set-cookie']).split(';')[0]!;
}

async function auditRows(type: string, since: number) {
  return (
    await o.gw.app.ctx.pool.query<{ entry: string }>(
      'SELECT entry FROM audit_log WHERE idx >= $1 AND entry LIKE $2 ORDER BY idx',
      [since, `%"type":"${type}"%`],
    )
  ).rows.map((r) => JSON.parse(r.entry) as { agent?: { id: string }; detail?: Record<string, unknown> });
}
const auditSize = async () =>
  Number((await o.gw.app.ctx.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_log')).rows[0]!.n);

beforeAll(async () => {
  o = await startOutbound({ DELIVERY_MAX_ATTEMPTS: '2' }, 1);
  const r = o.recipients[0]!;
  // The recipient is down: both attempts answer 503, so the delivery fails.
  r.script.push({ kind: 'status', status: 503 }, { kind: 'status', status: 503 });
  const res = await request(o.gw.app.server)
    .post(`/exchanges?recipient=${encodeURIComponent(r.id)}`)
    .set('authorization', o.ehrAuth)
    .type('application/fhir+json')
    .send(messageBundle([r.id]))
    .expect(202);
  const view = await request(o.gw.app.server)
    .get(res.headers['content-location'] as string)
    .set('authorization', o.ehrAuth);
  deliveryId = view.body.recipients[0].delivery;
  await waitFor('the delivery to fail', async () =>
    (await deliveryState(deliveryId)) === 'failed' ? true : undefined,
  );
  operatorPassword = await addAuditUser(o.gw.app.ctx.pool, 'operator.omar', 'operator');
  officerPassword = await addAuditUser(o.gw.app.ctx.pool, 'officer.jane');
  chrome = await launchChromium('console', { width: 1400, height: 1000 });
  ({ page, pageErrors } = chrome);
}, 120_000);

afterAll(async () => {
  await chrome?.close();
  await o?.close();
});

describe('operator console /console in headless Chromium', () => {
  it('signs in as an operator and shows the failed delivery with its attempts, partner health and keys', async () => {
    await page.goto(`${o.gw.url}/console`);
    await page.locator('#login-form').waitFor({ state: 'visible' });
    await page.fill('#login-name', 'operator.omar');
    await page.fill('#login-password', operatorPassword);
    await page.click('#login-form button[type=submit]');
    await page.locator('#deliveries').waitFor({ state: 'visible' });
    expect(pageErrors).toEqual([]);
    await expect(page.locator('#who').textContent()).resolves.toBe('operator.omar');
    const row = page.locator(`tr[data-delivery="${deliveryId}"]`);
    await expect(row.getAttribute('data-state')).resolves.toBe('failed');
    await expect(row.locator('ol.attempts li').count()).resolves.toBe(2);
    await expect(row.locator('ol.attempts').textContent()).resolves.toContain('HTTP 503');
    const partner = page.locator(`tr[data-partner="${o.recipients[0]!.id}"]`);
    await expect(partner.locator('td').nth(4).textContent()).resolves.toBe('100 %');
    expect(await page.locator('#keys tbody tr').count()).toBeGreaterThanOrEqual(3);
    await expect(page.locator('#keys tbody').textContent()).resolves.toMatch(/active\S*\d{4}-\d{2}-\d{2}T/);
    await expect(page.locator('#checkpoint').isVisible()).resolves.toBe(true);
  });

  it('filters deliveries by state and partner in the query string', async () => {
    await page.goto(`${o.gw.url}/console/?state=delivered`);
    await expect(page.locator(`tr[data-delivery="${deliveryId}"]`).count()).resolves.toBe(0);
    await page.goto(
      `${o.gw.url}/console/?state=failed&partner=${encodeURIComponent(o.recipients[0]!.id)}&since=2020-01-01T00:00`,
    );
    await expect(page.locator(`tr[data-delivery="${deliveryId}"]`).count()).resolves.toBe(1);
    await page.goto(`${o.gw.url}/console/?state=failed&until=2020-01-01T00:00`);
    await expect(page.locator(`tr[data-delivery="${deliveryId}"]`).count()).resolves.toBe(0);
    const bad = await request(o.gw.app.server)
      .get('/console/?since=yesterday')
      .set('Cookie', await signIn('operator.omar', operatorPassword));
    expect(bad.status).toBe(400);
    expect(bad.body.resourceType).toBe('OperationOutcome');
  });

  it('retries the failed delivery once the recipient is back, and shows it delivered; audited with the name', async () => {
    const since = await auditSize();
    await page.goto(`${o.gw.url}/console/`);
    // The recipient answers again (its script is spent: it accepts).
    expect(o.recipients[0]!.script).toEqual([]);
    await page.click(`tr[data-delivery="${deliveryId}"] button.retry`);
    await expect.poll(() => page.locator('#action-result').textContent()).toContain('queued for another attempt');
    await waitFor('the retried delivery', async () =>
      (await deliveryState(deliveryId)) === 'delivered' ? true : undefined,
    );
    await expect
      .poll(
        async () => {
          await page.goto(`${o.gw.url}/console/`);
          return page.locator(`tr[data-delivery="${deliveryId}"]`).getAttribute('data-state');
        },
        { timeout: 15_000 },
      )
      .toBe('delivered');
    const retried = await auditRows('delivery.retried', since);
    expect(retried).toHaveLength(1);
    expect(retried[0]!.agent?.id).toBe('operator.omar');
    expect(pageErrors).toEqual([]);
    if (SCREENSHOTS) await page.screenshot({ path: join(SHOTS, 'console.png'), fullPage: true });
  });

  it('suspends and resumes the partner from the page, audited with the name', async () => {
    const since = await auditSize();
    const id = o.recipients[0]!.id;
    // Read through the directory's per-message caches first: the suspension must clear them at once.
    const directory = o.gw.app.ctx.directory;
    expect((await directory.sender(id))?.status).toBe('active');
    expect((await directory.resolve([id])).map((p) => p.status)).toEqual(['active']);
    await page.click(`tr[data-partner="${id}"] button.partner-action`);
    await expect
      .poll(() => page.locator(`tr[data-partner="${id}"] td`).nth(1).textContent(), { timeout: 15_000 })
      .toBe('suspended');
    expect((await directory.sender(id))?.status).toBe('suspended');
    const intake = await request(o.gw.app.server)
      .post(`/exchanges?recipient=${encodeURIComponent(id)}`)
      .set('authorization', o.ehrAuth)
      .type('application/fhir+json')
      .send(messageBundle([id]));
    expect(intake.status).toBe(422);
    await page.click(`tr[data-partner="${id}"] button.partner-action`);
    await expect
      .poll(() => page.locator(`tr[data-partner="${id}"] td`).nth(1).textContent(), { timeout: 15_000 })
      .toBe('active');
    expect((await auditRows('partner.suspended', since)).map((e) => e.agent?.id)).toEqual(['operator.omar']);
    expect((await auditRows('partner.resumed', since)).map((e) => e.agent?.id)).toEqual(['operator.omar']);
  });

  it('refuses a cross-origin retry or suspend (Origin mismatch), audited, and changes nothing', async () => {
    const cookie = await signIn('operator.omar', operatorPassword);
    const since = await auditSize();
    const id = o.recipients[0]!.id;
    for (const path of [
      `/console/deliveries/${deliveryId}/retry`,
      `/console/partners/${encodeURIComponent(id)}/suspend`,
    ]) {
      const res = await request(o.gw.app.server)
        .post(path)
        .set('Cookie', cookie)
        .set('Origin', 'https://attacker.example')
        .send({});
      expect(res.status, path).toBe(403);
      expect(res.body.resourceType).toBe('OperationOutcome');
      // A form post from another site (no JSON) is refused too.
      const form = await request(o.gw.app.server)
        .post(path)
        .set('Cookie', cookie)
        .set('Origin', o.gw.url)
        .type('application/x-www-form-urlencoded')
        .send('x=1');
      expect(form.status, path).toBe(415);
    }
    const denied = await auditRows('authz.denied', since);
    expect(denied.map((e) => e.detail?.reason)).toEqual(['cross_origin', 'not_json', 'cross_origin', 'not_json']);
    expect((await o.gw.app.ctx.directory.get(id))?.status).toBe('active');
    expect(await auditRows('partner.suspended', since)).toEqual([]);
  });

  it('answers 403 to an account without the operator role (page and writes), audited; 401 without a session', async () => {
    const cookie = await signIn('officer.jane', officerPassword);
    const since = await auditSize();
    const pageRes = await request(o.gw.app.server).get('/console/').set('Cookie', cookie);
    expect(pageRes.status).toBe(403);
    expect(pageRes.text).not.toContain(deliveryId);
    const write = await request(o.gw.app.server)
      .post(`/console/partners/${encodeURIComponent(o.recipients[0]!.id)}/suspend`)
      .set('Cookie', cookie)
      .set('Origin', o.gw.url)
      .send({});
    expect(write.status).toBe(403);
    expect(write.body.resourceType).toBe('OperationOutcome');
    const denied = await auditRows('authz.denied', since);
    expect(denied.map((e) => [e.agent?.id, e.detail?.reason])).toEqual([
      ['officer.jane', 'not_operator'],
      ['officer.jane', 'not_operator'],
    ]);
    const anonymous = await request(o.gw.app.server)
      .post(`/console/deliveries/${deliveryId}/retry`)
      .set('Origin', o.gw.url)
      .send({});
    expect(anonymous.status).toBe(401);
    // The operator keeps out of the audit trail: the audit page keeps its compliance role.
    const operator = await signIn('operator.omar', operatorPassword);
    expect((await request(o.gw.app.server).get('/audit/ui/session').set('Cookie', operator)).status).toBe(401);
    expect((await request(o.gw.app.server).get('/audit/ui/session').set('Cookie', cookie)).status).toBe(200);
  });

  it('serves the page with a strict CSP and no inline script or style', async () => {
    const cookie = await signIn('operator.omar', operatorPassword);
    for (const path of ['/console/', '/console/console.js', '/console/console.css', '/ui/page.css', '/ui/page.js']) {
      const res = await request(o.gw.app.server).get(path).set('Cookie', cookie).expect(200);
      expect(res.headers['content-security-policy'], path).toContain("script-src 'self'");
      expect(res.headers['content-security-policy'], path).toContain("default-src 'none'");
      expect(res.headers['x-content-type-options']).toBe('nosniff');
    }
    const html = (await request(o.gw.app.server).get('/console/').set('Cookie', cookie)).text;
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
    expect(scripts.length).toBe(1);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/\bsrc="\/console\/console\.js"/);
      expect(body!.trim()).toBe('');
    }
    expect(html).not.toMatch(/\son[a-z]+\s*=/i);
    expect(html).not.toMatch(/<style\b|\sstyle\s*=/i);
    // The shared look first, the console's own sheet on top; only the named files are served.
    expect([...html.matchAll(/<link rel="stylesheet" href="([^"]+)">/g)].map((m) => m[1])).toEqual([
      '/ui/page.css',
      '/console/console.css',
    ]);
    for (const path of ['/ui/other.js', '/ui/__proto__', '/ui/constructor', '/console/page.ts', '/ui/..%2Fpage.ts'])
      expect((await request(o.gw.app.server).get(path)).status, path).toBe(404);
    // Nothing loaded from elsewhere (no CDN): every script and stylesheet is the gateway's own.
    expect(html).not.toMatch(/\s(src|href)="(https?:)?\/\//i);
  });

  it('leaves the audit page to the compliance officer, who signs in there as before', async () => {
    await page.goto(`${o.gw.url}/audit/ui/`);
    await page.locator('#login-view').waitFor({ state: 'visible' });
    await page.fill('#login-name', 'officer.jane');
    await page.fill('#login-password', officerPassword);
    await page.click('#login-form button[type=submit]');
    await page.locator('#events tbody tr').first().waitFor();
    await expect(page.locator('#who').textContent()).resolves.toContain('officer.jane');
    if (SCREENSHOTS) await page.screenshot({ path: join(SHOTS, 'audit-ui.png'), fullPage: true });
  });
});

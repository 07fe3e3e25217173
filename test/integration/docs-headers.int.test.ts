import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gw: TestGateway;
let browser: BrowserContext | undefined;
const profile = mkdtempSync(join(tmpdir(), 'docs-chromium-'));

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await browser?.close();
  await gw?.close();
  rmSync(profile, { recursive: true, force: true });
});

describe('/docs (Swagger UI) security headers', () => {
  it('sends a CSP, X-Frame-Options and nosniff on the page, its scripts and the spec', async () => {
    for (const path of [
      '/docs',
      '/docs/static/swagger-ui-bundle.js',
      '/docs/static/swagger-initializer.js',
      '/docs/json',
    ]) {
      const res = await request(gw.app.server).get(path);
      expect(res.status, path).toBe(200);
      const csp = res.headers['content-security-policy'] as string;
      expect(csp, path).toContain("default-src 'none'");
      expect(csp, path).toContain("script-src 'self'");
      expect(csp, path).toContain("frame-ancestors 'none'");
      expect(csp, path).not.toContain('unsafe-eval');
      expect(csp.match(/script-src[^;]*/)![0], path).not.toContain('unsafe-inline');
      expect(res.headers['x-frame-options'], path).toBe('DENY');
      expect(res.headers['x-content-type-options'], path).toBe('nosniff');
    }
  });

  it('still renders in headless Chromium under that CSP, with no violation', async () => {
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
    const page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(30_000);
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(m.text());
    });
    await page.goto(`${gw.url}/docs`);
    await page.locator('.swagger-ui .info .title').waitFor({ state: 'visible' });
    await page.locator('.opblock').first().waitFor({ state: 'visible' });
    expect(problems).toEqual([]);
  }, 60_000);
});

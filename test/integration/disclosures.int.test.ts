import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import type { Page } from 'playwright-core';
import { startTwoGateways, type Peer, type TwoGateways } from '../helpers/two-gateways.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient, type TestClient } from '../helpers/auth.ts';
import { waitFor } from '../helpers/outbound.ts';
import { launchChromium, type TestBrowser } from '../helpers/browser.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { SCOPE_ADMIN, SCOPE_AUDIT_READ } from '../../src/auth/scopes.ts';
import { addAuditUser } from '../../src/audit/users.ts';
import { buildEvidencePack } from '../../src/audit/export.ts';
import { committedSize } from '../../src/audit/checkpoint.ts';
import { nodeVerifyDeps } from '../../src/audit/verify-node.ts';
import { verifyDisclosureReport, type DisclosureReport } from '../../src/audit/verifier/disclosures.ts';
import { rotateUse, rotationPolicies } from '../../src/keys/rotation.ts';
import { patientIdentifiers, type PatientIdentifier } from '../../src/fhir/patient-identifiers.ts';

/**
 * The accounting of disclosures against ground truth: gateway A sends real
 * Synthea bundles to two real partner gateways (B and C) on two dates, and
 * for each patient the report (API, page, AuditEvent search) lists exactly
 * the deliveries made of that patient's records in the period, each proven
 * offline; the same after the blinding key is rotated.
 */
const SYNTHEA = join(import.meta.dirname, '../fixtures/synthea');
const read = (f: string) => readFileSync(join(SYNTHEA, f), 'utf8');
const P = read('Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json');
const Q = read('Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json');
const NEVER_SENT = read('Ned_Hintz_e4b9259d-0f54-48d1-a35d-b526729a4dfe.json');
const SSN = 'http://hl7.org/fhir/sid/us-ssn';
const ssnOf = (text: string): PatientIdentifier => patientIdentifiers(JSON.parse(text)).find((i) => i.system === SSN)!;
const DAY = 86_400_000;

interface Sent {
  patient: string;
  exchange: string;
  delivery: string;
  partner: string;
  day: string;
}

let t: TwoGateways;
let c: TestGateway;
let a: Peer;
let auditor: TestClient;
const sent: Sent[] = [];
const day1 = new Date(Date.now() - 3 * DAY);

async function send(text: string, to: string[], patient: string): Promise<string> {
  const res = await request(a.gw.app.server)
    .post(`/exchanges?${to.map((r) => `recipient=${encodeURIComponent(r)}`).join('&')}`)
    .set('authorization', await a.ehr.bearer())
    .set('idempotency-key', randomUUID())
    .type('application/fhir+json')
    .send(text);
  expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(202);
  const exchange = (res.headers['content-location'] as string).split('/').pop()!;
  await waitFor(
    `exchange ${exchange} delivered`,
    async () => {
      const v = await request(a.gw.app.server)
        .get(`/exchanges/${exchange}`)
        .set('authorization', await a.ehr.bearer());
      return v.body.recipients?.every((r: { state: string }) => r.state === 'delivered') ? true : undefined;
    },
    30_000,
  );
  const { rows } = await a.gw.app.ctx.pool.query<{ id: string; partner_id: string }>(
    'SELECT id::text, partner_id FROM deliveries WHERE exchange_id = $1',
    [exchange],
  );
  const day = new Date().toISOString().slice(0, 10);
  for (const r of rows) sent.push({ patient, exchange, delivery: r.id, partner: r.partner_id, day });
  return exchange;
}

async function account(id: PatientIdentifier, period: { from?: string; to?: string } = {}) {
  const res = await request(a.gw.app.server)
    .post('/audit/disclosures')
    .set('authorization', await auditor.bearer())
    .send({ system: id.system, value: id.value, ...period });
  expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(200);
  return res.body as DisclosureReport;
}

const truth = (patient: string, day?: string) =>
  sent
    .filter((s) => s.patient === patient && (day === undefined || s.day === day))
    .map((s) => `${s.exchange}/${s.delivery}/${s.partner}`)
    .sort();
const listed = (r: DisclosureReport) => r.disclosures.map((d) => `${d.exchange}/${d.delivery}/${d.recipient}`).sort();

beforeAll(async () => {
  t = await startTwoGateways();
  a = t.a;
  c = await startTestGateway({ DELIVERY_RETRY_BASE: '100ms', DELIVERY_RETRY_MAX: '500ms' });
  const cAdmin = await testClient(c, { scopes: [SCOPE_ADMIN] });
  const register = async (self: TestGateway, admin: TestClient, other: TestGateway) =>
    request(self.app.server)
      .post('/admin/partners')
      .set('authorization', await admin.bearer())
      .send({
        id: other.config.org,
        name: `hospital ${other.config.org.slice(-5)}`,
        endpoint: `${other.config.baseUrl}/inbox`,
        jwks_uri: `${other.config.baseUrl}/.well-known/jwks.json`,
      })
      .expect(201);
  await register(a.gw, a.admin, c);
  await register(c, cAdmin, a.gw);
  auditor = await testClient(a.gw, { scopes: [SCOPE_AUDIT_READ] });
  const B = t.b.gw.config.org;
  const C = c.config.org;
  // Day one, three days ago: P to both partners in one submission. Only Date is faked, and it keeps running.
  vi.useFakeTimers({ toFake: ['Date'], now: day1, shouldAdvanceTime: true });
  try {
    await send(P, [B, C], 'P');
  } finally {
    vi.useRealTimers();
  }
  // Day two, today: P to B again, and another patient to B.
  await send(P, [B], 'P');
  await send(Q, [B], 'Q');
}, 180_000);

afterAll(async () => {
  vi.useRealTimers();
  await t?.close();
  await c?.close();
});

describe('accounting of disclosures, against ground truth', () => {
  it('lists exactly the deliveries of the patient, on both dates, with receipts proven', async () => {
    const report = await account(ssnOf(P));
    expect(truth('P')).toHaveLength(3);
    expect(new Set(sent.filter((s) => s.patient === 'P').map((s) => s.day)).size).toBe(2);
    expect(listed(report)).toEqual(truth('P'));
    for (const d of report.disclosures) {
      expect(d.receipt.status).toBe('received');
      expect(d.receipt.entry).toBeTypeOf('number');
      // No purpose stated: the client's default, TREAT, travels with the disclosure.
      expect(d.purposeOfUse).toEqual(['TREAT']);
      expect(d.recipientName).toMatch(/^gateway |^hospital /);
    }
    expect(report.disclosures.map((d) => d.recorded.slice(0, 10))).toEqual(
      sent.filter((s) => s.patient === 'P').map((s) => s.day),
    );
    // The report names no identifier: only its blind, one per blinding key.
    const text = JSON.stringify(report);
    for (const id of patientIdentifiers(JSON.parse(P))) expect(text).not.toContain(id.value);
    expect(report.blinds).toHaveLength(1);
    const check = await verifyDisclosureReport(report, nodeVerifyDeps);
    expect(check, JSON.stringify(check.problem)).toMatchObject({ ok: true, disclosures: 3, unprovenReceipts: 0 });
  });

  it('finds the same disclosures by any identifier of the patient, and only in the period asked', async () => {
    const mrn = patientIdentifiers(JSON.parse(P)).find((i) => i.system === 'http://hospital.smarthealthit.org')!;
    expect(listed(await account(mrn))).toEqual(truth('P'));
    const first = day1.toISOString().slice(0, 10);
    expect(listed(await account(ssnOf(P), { from: first, to: first }))).toEqual(truth('P', first));
    expect(truth('P', first)).toHaveLength(2);
    const today = new Date().toISOString().slice(0, 10);
    expect(listed(await account(ssnOf(P), { from: today }))).toEqual(truth('P', today));
  });

  it('lists none for a patient never sent, and only its own for another patient', async () => {
    expect((await account(ssnOf(NEVER_SENT))).disclosures).toEqual([]);
    expect(listed(await account(ssnOf(Q)))).toEqual(truth('Q'));
    expect(truth('Q')).toHaveLength(1);
    // A near miss of the identifier is another identifier.
    const near = { ...ssnOf(P), value: `${ssnOf(P).value}0` };
    expect((await account(near)).disclosures).toEqual([]);
    expect((await account({ system: 'urn:other', value: ssnOf(P).value })).disclosures).toEqual([]);
  });

  it('audits every query with who asked and the blind, never the identifier', async () => {
    const { rows } = await a.gw.app.ctx.pool.query<{ entry: string }>(
      "SELECT entry FROM audit_log WHERE type = 'disclosures.queried' ORDER BY idx",
    );
    expect(rows.length).toBeGreaterThanOrEqual(7);
    const last = JSON.parse(rows.at(-1)!.entry);
    expect(last).toMatchObject({ agent: { type: 'client', id: auditor.id }, detail: { via: 'api', disclosures: 0 } });
    expect(last.patients).toHaveLength(1);
    for (const r of rows) for (const id of patientIdentifiers(JSON.parse(P))) expect(r.entry).not.toContain(id.value);
  });

  it('refuses a query without a value or with a bad date (400, audited as a refusal)', async () => {
    const bearer = await auditor.bearer();
    const noValue = await request(a.gw.app.server)
      .post('/audit/disclosures')
      .set('authorization', bearer)
      .send({ system: SSN });
    expect(noValue.status).toBe(400);
    expect(noValue.body.resourceType).toBe('OperationOutcome');
    const badDate = await request(a.gw.app.server)
      .post('/audit/disclosures')
      .set('authorization', bearer)
      .send({ system: SSN, value: '1', from: '2026-02-30' });
    expect(badDate.status).toBe(400);
    const { rows } = await a.gw.app.ctx.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM audit_log WHERE type = 'request.refused' AND entry LIKE '%/audit/disclosures%'",
    );
    expect(rows[0]!.n).toBe(2);
    // Without the audit scope: no accounting.
    const ehr = await request(a.gw.app.server)
      .post('/audit/disclosures')
      .set('authorization', await a.ehr.bearer())
      .send({ system: SSN, value: '1' });
    expect(ehr.status).toBe(403);
  });

  it('answers patient.identifier on AuditEvent search (GET and POST), blinded on the server', async () => {
    const id = ssnOf(P);
    const bearer = await auditor.bearer();
    const get = await request(a.gw.app.server)
      .get('/fhir/AuditEvent')
      .query({ 'patient.identifier': `${id.system}|${id.value}`, subtype: 'exchange.sealed', _count: '100' })
      .set('authorization', bearer);
    expect(get.status).toBe(200);
    const deliveries = (get.body.entry ?? []).map(
      (e: { resource: { entity: Array<{ what: { identifier: { system: string; value: string } } }> } }) =>
        e.resource.entity.find((x) => x.what.identifier.system.endsWith(':delivery'))!.what.identifier.value,
    );
    expect(deliveries.sort()).toEqual(
      sent
        .filter((s) => s.patient === 'P')
        .map((s) => s.delivery)
        .sort(),
    );
    expect(get.body.total).toBe(3);
    const posted = await request(a.gw.app.server)
      .post('/fhir/AuditEvent/_search')
      .type('form')
      .send({ 'patient.identifier': `${id.system}|${id.value}`, subtype: 'intake.accepted' })
      .set('authorization', bearer);
    expect(posted.status).toBe(200);
    expect(posted.body.total).toBe(2);
    const none = await request(a.gw.app.server)
      .get('/fhir/AuditEvent')
      .query({ 'patient.identifier': `${SSN}|000-00-0000` })
      .set('authorization', bearer);
    expect(none.body.total).toBe(0);
    const bad = await request(a.gw.app.server)
      .get('/fhir/AuditEvent')
      .query({ 'patient.identifier': id.value })
      .set('authorization', bearer);
    expect(bad.status).toBe(400);
    const { rows } = await a.gw.app.ctx.pool.query<{ entry: string }>(
      "SELECT entry FROM audit_log WHERE type = 'disclosures.queried' AND entry LIKE '%fhir-search%'",
    );
    expect(rows).toHaveLength(3);
    // The receiving gateway blinded them too, under its own key: its inbox entries answer there.
    const b = t.b;
    const bAuditor = await testClient(b.gw, { scopes: [SCOPE_AUDIT_READ] });
    const atB = await request(b.gw.app.server)
      .get('/fhir/AuditEvent')
      .query({ 'patient.identifier': `${id.system}|${id.value}`, subtype: 'inbox.accepted' })
      .set('authorization', await bAuditor.bearer());
    expect(atB.body.total).toBe(2);
  });

  it('verifies offline: complete against the whole trail, and a dropped, altered or forged line is caught', async () => {
    const report = await account(ssnOf(P));
    const size = await committedSize(a.gw.app.ctx.pool);
    const trail = [await buildEvidencePack(a.gw.app.ctx, 0, size)];
    const full = await verifyDisclosureReport(report, nodeVerifyDeps, { trail });
    expect(full, JSON.stringify(full.problem)).toMatchObject({ ok: true, complete: true });

    const dropped = { ...report, disclosures: report.disclosures.slice(1) };
    const withoutProof = {
      ...dropped,
      entries: dropped.entries.filter((e) => e.index !== report.disclosures[0]!.entry),
    };
    expect((await verifyDisclosureReport(dropped, nodeVerifyDeps)).problem?.kind).toBe('incomplete');
    expect((await verifyDisclosureReport(withoutProof, nodeVerifyDeps)).ok).toBe(true);
    expect((await verifyDisclosureReport(withoutProof, nodeVerifyDeps, { trail })).problem?.kind).toBe('incomplete');

    const otherRecipient = structuredClone(report);
    otherRecipient.disclosures[0]!.recipient = 'urn:someone-else';
    expect((await verifyDisclosureReport(otherRecipient, nodeVerifyDeps)).problem?.kind).toBe('mismatch');

    const edited = structuredClone(report);
    const e = edited.entries.find((x) => x.index === report.disclosures[0]!.entry)!;
    e.entry = e.entry.replace(
      report.disclosures[0]!.recipient,
      t.b.gw.config.org === report.disclosures[0]!.recipient ? c.config.org : t.b.gw.config.org,
    );
    expect((await verifyDisclosureReport(edited, nodeVerifyDeps)).problem?.kind).toBe('changed');

    const otherPatient = { ...report, blinds: (await account(ssnOf(Q))).blinds };
    expect((await verifyDisclosureReport(otherPatient, nodeVerifyDeps)).problem?.kind).toBe('mismatch');

    // The command line: offline, no database.
    const dir = mkdtempSync(join(tmpdir(), 'gw-disclosures-'));
    writeFileSync(join(dir, 'report.json'), JSON.stringify(report));
    writeFileSync(join(dir, 'trail.json'), JSON.stringify(trail[0]));
    const ok = await runCli(
      ['audit', 'verify', join(dir, 'report.json'), '--trail', join(dir, 'trail.json')],
      cleanEnv(),
    );
    expect(ok.stdout).toContain('OK: 3 disclosure(s)');
    expect(ok.code).toBe(0);
    writeFileSync(join(dir, 'dropped.json'), JSON.stringify(dropped));
    const bad = await runCli(['audit', 'verify', join(dir, 'dropped.json')], cleanEnv());
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('NOT VERIFIED (incomplete)');
  }, 60_000);

  it('gives the same answer after the blinding key is rotated, and finds disclosures of both generations', async () => {
    const before = await account(ssnOf(P));
    const ctx = a.gw.app.ctx;
    const oldKid = ctx.keyring.active('blinding').kid;
    await rotateUse(
      { pool: ctx.pool, hsm: ctx.hsm, actor: { type: 'admin', id: 'test' } },
      'blinding',
      rotationPolicies(ctx.config).blinding,
      {
        request: { now: true },
        wait: true,
      },
    );
    await ctx.keyring.reload();
    const newKid = ctx.keyring.active('blinding').kid;
    expect(newKid).not.toBe(oldKid);
    const after = await account(ssnOf(P));
    expect(after.blinds.map((b) => b.key)).toEqual([newKid, oldKid]);
    expect(after.disclosures).toEqual(before.disclosures);
    // A disclosure after the rotation carries the new key's blind, and is found with the old ones.
    await send(P, [c.config.org], 'P');
    const both = await account(ssnOf(P));
    expect(listed(both)).toEqual(truth('P'));
    expect(truth('P')).toHaveLength(4);
    const keys = new Set(
      both.entries
        .map((e) => JSON.parse(e.entry) as { type: string; patients?: Array<{ key: string }> })
        .filter((e) => e.type === 'exchange.sealed')
        .map((e) => e.patients![0]!.key),
    );
    expect(keys).toEqual(new Set([oldKid, newKid]));
    expect((await verifyDisclosureReport(both, nodeVerifyDeps)).ok).toBe(true);
    // The retired key stays on the token for lookup: the policy never destroys it.
    expect(ctx.keyring.blindingKeys().map((k) => k.state)).toEqual(['active', 'deactivated']);
    expect(await ctx.hsm.hasKey(ctx.keyring.blindingKeys()[1]!.hsm_id)).toBe(true);
  }, 60_000);
});

describe('the accounting on the audit page, in headless Chromium', () => {
  let chrome: TestBrowser;
  let page: Page;
  beforeAll(async () => {
    const password = await addAuditUser(a.gw.app.ctx.pool, 'officer.ann');
    chrome = await launchChromium('disclosures-ui');
    page = chrome.page;
    await page.goto(`${a.gw.url}/audit/ui`);
    await page.fill('#login-name', 'officer.ann');
    await page.fill('#login-password', password);
    await page.click('#login-form button[type=submit]');
    await page.locator('#main-view').waitFor({ state: 'visible' });
  }, 60_000);
  afterAll(async () => chrome?.close());

  it('lists the disclosures, proves them in the browser and prints the report alone', async () => {
    const id = ssnOf(P);
    await page.fill('#d-system', id.system);
    await page.fill('#d-value', id.value);
    await page.click('#disclosure-form button[type=submit]');
    await expect.poll(() => page.locator('#disclosures tbody tr').count()).toBe(truth('P').length);
    await expect
      .poll(() => page.locator('#report-proof').textContent(), { timeout: 15_000 })
      .toContain('Proven in this browser');
    const rows = await page.locator('#disclosures tbody tr').allTextContents();
    for (const s of sent.filter((x) => x.patient === 'P')) expect(rows.some((r) => r.includes(s.delivery))).toBe(true);
    expect(rows.every((r) => r.includes('TREAT') && r.includes('received'))).toBe(true);
    await expect(page.locator('#report-patient').textContent()).resolves.toBe(`${id.system}|${id.value}`);
    await expect(page.locator('#report-generated').textContent()).resolves.toContain('officer.ann');

    await page.emulateMedia({ media: 'print' });
    expect(await page.locator('#report').isVisible()).toBe(true);
    for (const hidden of ['#accounting', '#search', '#trail', 'header', '#report-print'])
      expect(await page.locator(hidden).isVisible(), hidden).toBe(false);
    await page.emulateMedia({ media: 'screen' });

    const download = page.waitForEvent('download');
    await page.click('#report-download');
    const file = await (await download).path();
    const saved = JSON.parse(readFileSync(file, 'utf8')) as DisclosureReport;
    expect((await verifyDisclosureReport(saved, nodeVerifyDeps)).ok).toBe(true);
    expect(chrome.pageErrors).toEqual([]);

    const { rows: queried } = await a.gw.app.ctx.pool.query<{ entry: string }>(
      "SELECT entry FROM audit_log WHERE type = 'disclosures.queried' ORDER BY idx DESC LIMIT 1",
    );
    expect(JSON.parse(queried[0]!.entry)).toMatchObject({
      agent: { type: 'user', id: 'officer.ann' },
      detail: { via: 'audit-ui', disclosures: truth('P').length },
    });
  });

  it('shows a refusal on the page for an empty value typed as spaces', async () => {
    await page.fill('#d-value', '   ');
    await page.click('#disclosure-form button[type=submit]');
    await page.locator('#disclosure-error').waitFor({ state: 'visible' });
    await expect(page.locator('#disclosure-error').textContent()).resolves.toContain('value is required');
  });
});

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit } from '../../src/audit/append.ts';
import { nodeHasher } from '../../src/audit/hasher.ts';
import { verifyConsistency, verifyInclusion } from '../../src/audit/verifier/merkle.ts';
import { fromBase64 } from '../../src/audit/verifier/note.ts';
import { SCOPE_AUDIT_READ } from '../../src/auth/scopes.ts';
import { inTransaction } from '../../src/db/pool.ts';
import { testClient } from '../helpers/auth.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gw: TestGateway;
let auditor: string;
let other: string;
const dir = mkdtempSync(join(tmpdir(), 'audit-api-'));

beforeAll(async () => {
  gw = await startTestGateway();
  auditor = await (await testClient(gw, { scopes: [SCOPE_AUDIT_READ] })).bearer();
  other = await (await testClient(gw, { scopes: ['system/*.read'] })).bearer();
  await inTransaction(gw.app.ctx.pool, (c) =>
    appendAudit(
      c,
      [
        {
          type: 'intake.accepted',
          outcome: 'success',
          agent: { type: 'client', id: 'ehr-1' },
          entity: [{ type: 'exchange', id: 'ex-42', digest: 'sha256:00ff' }],
        },
        {
          type: 'delivery.failed',
          outcome: 'serious-failure',
          agent: { type: 'gateway', id: 'self' },
          entity: [{ type: 'delivery', id: 'dl-7' }],
          detail: { status: 500 },
        },
        {
          type: 'inbox.accepted',
          outcome: 'success',
          agent: { type: 'partner', id: 'org-b' },
          entity: [{ type: 'exchange', id: 'ex-43' }],
        },
      ],
      new Date('2026-01-15T10:00:00Z'),
    ),
  );
});
afterAll(async () => {
  await gw?.close();
});

const get = (path: string, auth = auditor) => request(gw.app.server).get(path).set('Authorization', auth);

describe('audit API', () => {
  it('needs system/AuditEvent.read: 401 without a token, 403 with a wildcard read token', async () => {
    expect((await request(gw.app.server).get('/fhir/AuditEvent')).status).toBe(401);
    const res = await get('/fhir/AuditEvent', other);
    expect(res.status).toBe(403);
    expect(res.body.resourceType).toBe('OperationOutcome');
  });

  it('searches AuditEvents as a FHIR searchset Bundle in IHE BALP shape', async () => {
    const res = await get('/fhir/AuditEvent?entity=ex-42');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/application\/fhir\+json/);
    expect(res.body).toMatchObject({ resourceType: 'Bundle', type: 'searchset', total: 1 });
    const e = res.body.entry[0].resource;
    expect(e).toMatchObject({
      resourceType: 'AuditEvent',
      // An EHR's submission is a RESTful create (IHE BALP); the gateway's own type follows the standard subtype.
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
      subtype: [
        { system: 'http://hl7.org/fhir/restful-interaction', code: 'create' },
        { system: 'urn:fhir-gateway:audit-event-type', code: 'intake.accepted' },
      ],
      action: 'C',
      outcome: '0',
      recorded: '2026-01-15T10:00:00.000Z',
      source: { observer: { identifier: { system: 'urn:fhir-gateway:agent:gateway', value: gw.config.org } } },
    });
    expect(e.agent[0].who.identifier.value).toBe('ehr-1');
    expect(e.entity[1]).toMatchObject({
      what: { identifier: { value: 'ex-42' } },
      detail: [{ type: 'digest', valueString: 'sha256:00ff' }],
    });

    expect(
      (await get('/fhir/AuditEvent?outcome=8')).body.entry.map(
        (x: { resource: { subtype: Array<{ code: string }> } }) => x.resource.subtype[0]!.code,
      ),
    ).toContain('delivery.failed');
    expect((await get('/fhir/AuditEvent?agent=org-b')).body.total).toBe(1);
    expect((await get('/fhir/AuditEvent?type=110107&date=ge2026-01-15&date=le2026-01-15')).body.total).toBe(1);
    expect((await get('/fhir/AuditEvent?type=rest&date=ge2026-01-15&date=le2026-01-15')).body.total).toBe(1);
    expect((await get('/fhir/AuditEvent?subtype=create,disclose&date=ge2026-01-15&date=le2026-01-15')).body.total).toBe(
      2,
    );
    expect((await get('/fhir/AuditEvent?type=intake.accepted&date=lt2026-01-01')).body.total).toBe(0);
    const page = await get('/fhir/AuditEvent?_count=1');
    expect(page.body.entry.length).toBe(1);
    // The next page starts after this page's last entry (keyset), not at an offset.
    expect(page.body.link.find((l: { relation: string }) => l.relation === 'next').url).toBe(
      `${gw.config.baseUrl}/fhir/AuditEvent?_count=1&_cursor=${page.body.entry[0].resource.id}`,
    );
    const one = await get(`/fhir/AuditEvent/${e.id}`);
    expect(one.body.id).toBe(e.id);
  });

  it('date: real calendar dates and times only, 400 naming date and audited; partial dates are their span', async () => {
    const refusals = async () =>
      Number(
        (await gw.app.ctx.pool.query(`SELECT count(*)::int AS n FROM audit_log WHERE type = 'request.refused'`)).rows[0]
          .n,
      );
    for (const d of [
      '2026-02-30',
      'ge2026-02-31',
      '0000-01-01',
      '2026-02-30T10:00Z',
      '2026-13-01',
      '2026-02-29',
      '2026-02-28T24:00Z',
      '2026-02-28T10:60Z',
      '2026-02-28T10:00+15:00',
      '2026-02-28T10:00-14:01',
      '-271821-04-20',
      '2026-02-28T10:00',
    ]) {
      const before = await refusals();
      const res = await get(`/fhir/AuditEvent?date=${encodeURIComponent(d)}`);
      expect(res.status, d).toBe(400);
      expect(res.body.issue[0].details.coding[0].code, d).toBe('INVALID_VALUE');
      expect(res.body.issue[0].expression, d).toEqual(['date']);
      expect(await refusals(), d).toBe(before + 1);
    }
    for (const d of ['2024-02-29', '2026-02-28T23:59:59Z', '2026-02-28T10:00+01:00', 'ge2026', 'lt2026-03']) {
      const res = await get(`/fhir/AuditEvent?date=${encodeURIComponent(d)}`);
      expect(res.status, d).toBe(200);
    }
    // The one intake.accepted entry was recorded at 2026-01-15T10:00:00Z.
    const total = async (dates: string[]) =>
      (
        await get(
          `/fhir/AuditEvent?type=intake.accepted&${dates.map((d) => `date=${encodeURIComponent(d)}`).join('&')}`,
        )
      ).body.total;
    expect(await total(['2026'])).toBe(1);
    expect(await total(['2025'])).toBe(0);
    expect(await total(['2026-01'])).toBe(1);
    expect(await total(['2026-02'])).toBe(0);
    expect(await total(['le2026-01', 'ge2026-01'])).toBe(1);
    expect(await total(['gt2026-01'])).toBe(0);
    expect(await total(['lt2026-01'])).toBe(0);
    expect(await total(['gt2025', 'lt2027'])).toBe(1);
    expect(await total(['ge2026-01-15T10:00Z'])).toBe(1);
    expect(await total(['gt2026-01-15T10:00:00Z'])).toBe(0);
    expect(await total(['2026-01-15T11:00:00+01:00'])).toBe(1);
  });

  it('answers bad parameters with 4xx OperationOutcomes', async () => {
    for (const path of [
      '/fhir/AuditEvent?date=yesterday',
      '/fhir/AuditEvent?outcome=3',
      '/fhir/AuditEvent?_count=0',
      '/fhir/AuditEvent?colour=red',
      '/fhir/AuditEvent?type=999999',
      '/audit/proof/inclusion',
      '/audit/proof/inclusion?index=-1',
      '/audit/proof/inclusion?index=5&size=2',
      '/audit/proof/consistency?from=0&to=2',
      '/audit/proof/consistency?from=3&to=2',
      '/audit/export?from=5&to=2',
      '/audit/export?to=999999',
      '/audit/proof/inclusion?index=0&size=99999999',
      '/fhir/AuditEvent/abc',
    ]) {
      const res = await get(path);
      expect(res.status, path).toBeGreaterThanOrEqual(400);
      expect(res.status, path).toBeLessThan(500);
      expect(res.body.resourceType, path).toBe('OperationOutcome');
    }
  });

  it('serves the signed checkpoint and proofs that verify against it', async () => {
    await request(gw.app.server).post('/audit/checkpoint').set('Authorization', auditor).expect(200);
    const cp = (await get('/audit/checkpoint')).body;
    expect(cp.note.startsWith(`${cp.origin}\n${cp.treeSize}\n${cp.rootHash}\n\n\u2014 ${cp.origin} `)).toBe(true);
    expect(cp.key.kid).toBe(cp.keyId);
    const incl = (await get(`/audit/proof/inclusion?index=1&size=${cp.treeSize}`)).body;
    verifyInclusion(
      nodeHasher,
      1,
      cp.treeSize,
      fromBase64(incl.leafHash),
      incl.proof.map((h: string) => fromBase64(h)),
      fromBase64(cp.rootHash),
    );
    const cons = (await get(`/audit/proof/consistency?from=2&to=${cp.treeSize}`)).body;
    const root2 = (await get(`/audit/proof/inclusion?index=0&size=2`)).body.rootHash;
    verifyConsistency(
      nodeHasher,
      2,
      cp.treeSize,
      cons.proof.map((h: string) => fromBase64(h)),
      fromBase64(root2),
      fromBase64(cp.rootHash),
    );
  });

  it('exports an evidence pack that `gateway audit verify` accepts offline, and rejects when altered', async () => {
    const res = await get('/audit/export');
    expect(res.status).toBe(200);
    const pack = res.body;
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify(pack));
    const env = cleanEnv({ DATA_DIR: join(dir, 'no-such-data') });
    const ok = await runCli(['audit', 'verify', good], env);
    expect(ok.stdout).toMatch(/^OK: /);
    expect(ok.code).toBe(0);

    const keyFile = join(dir, 'key.json');
    writeFileSync(keyFile, JSON.stringify(pack.keys[0]));
    expect((await runCli(['audit', 'verify', good, '--key', keyFile], env)).code).toBe(0);

    const altered = structuredClone(pack);
    const pos = altered.entries.findIndex((e: string) => e.includes('serious-failure'));
    expect(pos).toBeGreaterThanOrEqual(0);
    altered.entries[pos] = altered.entries[pos].replace('serious-failure', 'success');
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify(altered));
    const out = await runCli(['audit', 'verify', bad], env);
    expect(out.code).toBe(1);
    expect(out.stdout).toContain(`TAMPERED (changed) at entry ${pack.from + pos}`);

    const missing = structuredClone(pack);
    missing.entries.splice(2, 1);
    writeFileSync(bad, JSON.stringify(missing));
    const out2 = await runCli(['audit', 'verify', bad], env);
    expect(out2.code).toBe(1);
    expect(out2.stdout).toContain('TAMPERED (missing) at entry 2');

    const db = await runCli(['audit', 'verify', '--db'], cleanEnv({ DATABASE_URL: gw.databaseUrl }));
    expect(db.stdout).toMatch(/^OK: /);
    expect(db.code).toBe(0);

    const user = await runCli(
      ['audit', 'users', 'add', '--name', 'auditor.bob'],
      cleanEnv({ DATABASE_URL: gw.databaseUrl }),
    );
    expect(user.code).toBe(0);
    const pw = user.stdout.trim().split('\n').pop()!;
    const login = await request(gw.app.server).post('/audit/ui/login').send({ name: 'auditor.bob', password: pw });
    expect(login.status).toBe(200);
    expect(login.headers['set-cookie']![0]).toMatch(/HttpOnly; SameSite=Strict; Max-Age=900/);
    const cookie = login.headers['set-cookie']![0]!.split(';')[0]!;
    expect((await request(gw.app.server).get('/audit/checkpoint').set('Cookie', cookie)).status).toBe(200);
    const wrong = await request(gw.app.server).post('/audit/ui/login').send({ name: 'auditor.bob', password: 'nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.body.resourceType).toBe('OperationOutcome');
    const failures = await gw.app.ctx.pool.query(
      `SELECT entry FROM audit_log WHERE type = 'auth.failure' AND entry LIKE '%auditor.bob%'`,
    );
    expect(failures.rows.length).toBe(1);
    // Password guessing is slowed per account: after a few failures the next attempt must wait (429, Retry-After).
    let status = 0;
    for (let i = 0; i < 10 && status !== 429; i++)
      status = (
        await request(gw.app.server)
          .post('/audit/ui/login')
          .send({ name: 'auditor.bob', password: `guess-${i}` })
      ).status;
    expect(status).toBe(429);
  });
});

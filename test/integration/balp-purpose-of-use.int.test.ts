import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { exportJWK, generateKeyPair } from 'jose';
import type { AuditEvent } from 'fhir/r4.js';
import { startTwoGateways, type Peer, type TwoGateways } from '../helpers/two-gateways.ts';
import { testClient } from '../helpers/auth.ts';
import { messageBundle, waitFor } from '../helpers/outbound.ts';
import { claimsFor, publishedEncKey, seal, signContent, softPartner, type SoftPartner } from '../helpers/envelopes.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { r4Errors } from '../helpers/r4-validator.ts';
import { BALP, balpErrors } from '../helpers/balp.ts';
import { appendAudit } from '../../src/audit/append.ts';
import { inTransaction } from '../../src/db/pool.ts';
import { SCOPE_AUDIT_READ } from '../../src/auth/scopes.ts';
import { PURPOSE_OF_USE_SYSTEM } from '../../src/fhir/purpose-of-use.ts';
import { verifyEvidencePack } from '../../src/audit/verifier/verify.ts';
import { nodeVerifyDeps } from '../../src/audit/verify-node.ts';

/**
 * IHE BALP AuditEvents and purpose of use between two real gateways: what
 * an EHR states (a header, MessageHeader.reason, its client's default) is
 * signed to the partner, and both sides' AuditEvents carry it; every
 * AuditEvent either gateway serves is valid R4 and holds what each BALP
 * profile it claims requires.
 */
const EVENT_CODES = 'urn:fhir-gateway:audit-event-type';
const gatewayType = (ae: AuditEvent) => ae.subtype?.find((s) => s.system === EVENT_CODES)?.code;
const purposes = (ae: AuditEvent | undefined) => ae?.purposeOfEvent?.map((c) => c.coding?.[0]?.code);
const entityId = (ae: AuditEvent, kind: string) =>
  ae.entity?.find((x) => x.what?.identifier?.system === `urn:fhir-gateway:entity:${kind}`)?.what?.identifier?.value;
const claim = (ae: AuditEvent | undefined) => ae?.meta?.profile?.map((p) => p.slice(BALP.length));

/** A message Bundle for `to`, with v3-ActReason (and other) codings in MessageHeader.reason. */
function messageWithReason(to: string, codings: Array<{ system: string; code: string }>): string {
  const b = JSON.parse(messageBundle([to], 1_000, `reason ${randomUUID()}`)) as {
    entry: Array<{ resource: Record<string, unknown> }>;
  };
  b.entry[0]!.resource.reason = { coding: codings };
  return JSON.stringify(b);
}

describe('BALP AuditEvents and purpose of use across two gateways', () => {
  let t: TwoGateways;
  let soft: SoftPartner;
  let auditA: string;
  let auditB: string;
  let aOrg: string;
  let bOrg: string;
  const dir = mkdtempSync(join(tmpdir(), 'balp-purpose-'));

  beforeAll(async () => {
    t = await startTwoGateways();
    aOrg = t.a.gw.config.org;
    bOrg = t.b.gw.config.org;
    soft = await softPartner(`urn:test:soft-${randomUUID().slice(0, 8)}`);
    await request(t.b.gw.app.server)
      .post('/admin/partners')
      .set('authorization', await t.b.admin.bearer())
      .send({
        id: soft.id,
        name: 'a sender before purpose_of_use',
        endpoint: 'http://127.0.0.1:9/soft',
        jwks: soft.jwks,
      })
      .expect(201);
    auditA = await (await testClient(t.a.gw, { scopes: [SCOPE_AUDIT_READ] })).bearer();
    auditB = await (await testClient(t.b.gw, { scopes: [SCOPE_AUDIT_READ] })).bearer();
  }, 60_000);
  afterAll(async () => t?.close());

  const auditEvents = async (p: Peer, auth: string): Promise<AuditEvent[]> => {
    const res = await request(p.gw.app.server)
      .get('/fhir/AuditEvent?_count=1000')
      .set('authorization', auth)
      .expect(200);
    return ((res.body.entry ?? []) as Array<{ resource: AuditEvent }>).map((e) => e.resource);
  };

  const submit = async (path: string, body: string, headers: Record<string, string> = {}) => {
    const res = await request(t.a.gw.app.server)
      .post(path)
      .set('authorization', await t.a.ehr.bearer())
      .set('content-type', 'application/fhir+json')
      .set(headers)
      .send(body);
    return res;
  };

  const delivered = (exchange: string) =>
    waitFor(`exchange ${exchange} delivered`, async () => {
      const res = await request(t.a.gw.app.server)
        .get(`/exchanges/${exchange}`)
        .set('authorization', await t.a.ehr.bearer());
      const r = res.body.recipients as Array<{ state: string; delivery: string }> | undefined;
      return r?.every((x) => x.state === 'delivered') ? r : undefined;
    });

  it('a stated purpose is signed to the partner and both gateways audit it; every AuditEvent is R4 and BALP', async () => {
    const exchangeOf = (res: request.Response) => {
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return (res.headers['content-location'] as string).split('/').pop()!;
    };
    const byHeader = exchangeOf(
      await submit('/fhir/$process-message', messageBundle([bOrg], 1_000, 'header'), { 'Purpose-Of-Use': 'ETREAT' }),
    );
    const byReason = exchangeOf(
      await submit(
        `/exchanges?recipient=${encodeURIComponent(bOrg)}`,
        messageWithReason(bOrg, [
          { system: 'http://snomed.info/sct', code: '183444007' },
          { system: PURPOSE_OF_USE_SYSTEM, code: 'PUBHLTH' },
        ]),
      ),
    );
    // The client's registered default, through the admin API; then none registered: TREAT.
    await request(t.a.gw.app.server)
      .patch(`/admin/clients/${encodeURIComponent(t.a.ehr.id)}`)
      .set('authorization', await t.a.admin.bearer())
      .send({ purpose_of_use: ['HOPERAT'] })
      .expect(200)
      .expect((r) => expect(r.body.purpose_of_use).toEqual(['HOPERAT']));
    const byDefault = exchangeOf(await submit('/fhir/$process-message', messageBundle([bOrg], 1_000, 'default')));
    await request(t.a.gw.app.server)
      .patch(`/admin/clients/${encodeURIComponent(t.a.ehr.id)}`)
      .set('authorization', await t.a.admin.bearer())
      .send({ purpose_of_use: [] })
      .expect(200);
    const byNothing = exchangeOf(await submit('/fhir/$process-message', messageBundle([bOrg], 1_000, 'nothing')));
    const want: Record<string, string[]> = {
      [byHeader]: ['ETREAT'],
      [byReason]: ['PUBHLTH'],
      [byDefault]: ['HOPERAT'],
      [byNothing]: ['TREAT'],
    };
    const deliveries: Record<string, string> = {};
    for (const ex of Object.keys(want)) deliveries[(await delivered(ex))[0]!.delivery] = ex;

    // B's EHR reads every message it received from A.
    const list = await request(t.b.gw.app.server)
      .get('/inbox/messages?_count=100')
      .set('authorization', await t.b.ehr.bearer())
      .expect(200);
    const fromA = (list.body.messages as Array<{ id: string; sender: string; delivery: string }>).filter(
      (m) => m.sender === aOrg && deliveries[m.delivery],
    );
    expect(fromA).toHaveLength(4);
    for (const m of fromA)
      await request(t.b.gw.app.server)
        .get(`/inbox/messages/${m.id}`)
        .set('authorization', await t.b.ehr.bearer())
        .expect(200);

    const a = await auditEvents(t.a, auditA);
    const b = await auditEvents(t.b, auditB);
    for (const ae of [...a, ...b]) {
      expect(r4Errors(ae), `${ae.id} ${gatewayType(ae)}`).toEqual([]);
      expect(balpErrors(ae), `${ae.id} ${gatewayType(ae)}`).toEqual([]);
      expect(JSON.stringify(ae)).not.toContain('IHE.BasicAudit.Minimal');
    }

    // Sender: every entry of the exchange's life carries its purpose.
    for (const [ex, codes] of Object.entries(want)) {
      const delivery = Object.keys(deliveries).find((d) => deliveries[d] === ex)!;
      const of = (type: string) =>
        a.filter(
          (ae) =>
            gatewayType(ae) === type && (entityId(ae, 'exchange') === ex || entityId(ae, 'delivery') === delivery),
        );
      for (const type of [
        'intake.accepted',
        'exchange.signed',
        'exchange.sealed',
        'delivery.attempt',
        'delivery.receipt',
      ]) {
        expect(of(type), `${ex} ${type}`).toHaveLength(1);
        expect(purposes(of(type)[0]), `${ex} ${type}`).toEqual(codes);
      }
      // The EHR's submission is a RESTful create by the client, from its address, claimed.
      const intake = of('intake.accepted')[0]!;
      expect(claim(intake)).toEqual(['IHE.BasicAudit.Create']);
      expect(intake.agent.find((x) => x.requestor)).toMatchObject({
        who: { identifier: { system: 'urn:fhir-gateway:agent:client', value: t.a.ehr.id } },
        network: { type: '2' },
        purposeOfUse: codes.map((c) => ({
          coding: [expect.objectContaining({ system: PURPOSE_OF_USE_SYSTEM, code: c })],
        })),
      });
      // The send: A is the source, B's inbox the recipient (no patient on this entry: the disclosure is not claimed).
      const attempt = of('delivery.attempt')[0]!;
      expect(attempt.type.code).toBe('110106');
      const role = (code: string) => attempt.agent.find((x) => x.type?.coding?.[0]?.code === code);
      expect(role('110153')?.who).toEqual(attempt.source.observer);
      expect(role('110152')).toMatchObject({
        who: { identifier: { value: bOrg } },
        network: { address: `${t.b.gw.config.baseUrl}/inbox`, type: '5' },
      });
    }

    // Receiver: the purpose it verified, on receipt and on each read.
    for (const m of fromA) {
      const codes = want[deliveries[m.delivery]!]!;
      const accepted = b.find((ae) => gatewayType(ae) === 'inbox.accepted' && entityId(ae, 'inbox-message') === m.id);
      const read = b.find((ae) => gatewayType(ae) === 'inbox.read' && entityId(ae, 'inbox-message') === m.id);
      expect(purposes(accepted)).toEqual(codes);
      expect(purposes(read)).toEqual(codes);
      expect(accepted?.type.code).toBe('110107');
      const source = accepted?.agent.find((x) => x.type?.coding?.[0]?.code === '110153');
      expect(source).toMatchObject({ who: { identifier: { value: aOrg } }, network: { type: '2' } });
      expect(accepted?.agent.find((x) => x.type?.coding?.[0]?.code === '110152')?.who).toEqual(
        accepted?.source.observer,
      );
      expect(claim(read)).toEqual(['IHE.BasicAudit.Read']);
      const stored = await t.b.gw.app.ctx.pool.query('SELECT purpose_of_use FROM inbox_messages WHERE id = $1', [m.id]);
      expect(stored.rows[0].purpose_of_use).toEqual(codes);
    }
    const rows = await t.a.gw.app.ctx.pool.query<{ id: string; purpose_of_use: string[] }>(
      'SELECT id, purpose_of_use FROM exchanges WHERE id = ANY($1)',
      [Object.keys(want)],
    );
    expect(Object.fromEntries(rows.rows.map((r) => [r.id, r.purpose_of_use]))).toEqual(want);
    // The admin's change is a RESTful update by its client, claimed.
    const updated = a.filter((ae) => gatewayType(ae) === 'client.updated');
    expect(updated.map(claim)).toEqual([['IHE.BasicAudit.Update'], ['IHE.BasicAudit.Update']]);
  });

  it('a purpose outside the value set, or stated twice differently, is a 422 audited as intake.refused; nothing is sent', async () => {
    const exchangesBefore = (await t.a.gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM exchanges')).rows[0].n;
    const refusals: Array<[request.Response, string[]]> = [
      [
        await submit('/fhir/$process-message', messageBundle([bOrg]), { 'Purpose-Of-Use': 'MARKETING' }),
        ['Purpose-Of-Use'],
      ],
      [
        await submit(
          '/fhir/$process-message',
          messageWithReason(bOrg, [{ system: PURPOSE_OF_USE_SYSTEM, code: 'MEDNEC' }]),
        ),
        ['Bundle.entry[0].resource.reason.coding[0]'],
      ],
      [
        await submit(
          '/fhir/$process-message',
          messageWithReason(bOrg, [{ system: PURPOSE_OF_USE_SYSTEM, code: 'TREAT' }]),
          {
            'Purpose-Of-Use': 'ETREAT',
          },
        ),
        ['Purpose-Of-Use', 'Bundle.entry[0].resource.reason'],
      ],
      [
        await request(t.a.gw.app.server)
          .post(`/imaging?recipient=${encodeURIComponent(bOrg)}`)
          .set('authorization', await t.a.ehr.bearer())
          .set('content-type', 'application/dicom')
          .set('Purpose-Of-Use', 'urn:other|TREAT')
          .send(Buffer.alloc(256)),
        ['Purpose-Of-Use'],
      ],
    ];
    for (const [res, expression] of refusals) {
      expect(res.status, JSON.stringify(res.body)).toBe(422);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].details.coding[0].code).toBe('PURPOSE_OF_USE_INVALID');
      expect(res.body.issue[0].expression).toEqual(expression);
    }
    const refused = (await auditEvents(t.a, auditA)).filter(
      (ae) =>
        gatewayType(ae) === 'intake.refused' &&
        ae.entity?.some((x) => x.detail?.some((d) => d.type === 'code' && d.valueString === 'PURPOSE_OF_USE_INVALID')),
    );
    expect(refused).toHaveLength(4);
    for (const ae of refused) {
      expect([ae.outcome, claim(ae), r4Errors(ae)]).toEqual(['4', undefined, []]);
      expect(ae.agent.find((x) => x.requestor)?.network?.address).toBeTruthy();
    }
    expect((await t.a.gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM exchanges')).rows[0].n).toBe(
      exchangesBefore,
    );

    // The same Idempotency-Key for another purpose is another request.
    const body = messageBundle([bOrg], 1_000, `replay ${randomUUID()}`);
    const key = `k-${randomUUID()}`;
    expect(
      (await submit(`/exchanges?recipient=${encodeURIComponent(bOrg)}`, body, { 'Idempotency-Key': key })).status,
    ).toBe(202);
    const other = await submit(`/exchanges?recipient=${encodeURIComponent(bOrg)}`, body, {
      'Idempotency-Key': key,
      'Purpose-Of-Use': 'HPAYMT',
    });
    expect([other.status, other.body.issue[0].details.coding[0].code]).toEqual([422, 'UNPROCESSABLE']);
    expect(other.body.issue[0].diagnostics).toContain('another purpose of use');

    // A client's default is checked too: 400 INVALID_VALUE on the admin API.
    const bad = await request(t.a.gw.app.server)
      .patch(`/admin/clients/${encodeURIComponent(t.a.ehr.id)}`)
      .set('authorization', await t.a.admin.bearer())
      .send({ purpose_of_use: ['TREAT', 'NOPE'] });
    expect([bad.status, bad.body.issue[0].expression]).toEqual([400, ['purpose_of_use']]);
  });

  it('a sender that signs no purpose is accepted and recorded with none; a purpose outside the value set is refused', async () => {
    const bEnc = await publishedEncKey(t.b.gw.url);
    const post = (envelope: string) =>
      request(t.b.gw.app.server).post('/inbox').set('content-type', 'application/jose').send(envelope);
    const bundle = () => ({ resourceType: 'Bundle', type: 'collection', id: randomUUID() });
    const before = claimsFor(soft, bOrg, bundle());
    expect((await post(seal(bEnc, await signContent(soft, before)))).status).toBe(200);
    const signed = claimsFor(soft, bOrg, bundle(), { purpose_of_use: ['COC'] } as object);
    expect((await post(seal(bEnc, await signContent(soft, signed)))).status).toBe(200);
    const bad = await post(
      seal(
        bEnc,
        await signContent(soft, claimsFor(soft, bOrg, bundle(), { purpose_of_use: ['TREAT', 'nope'] } as object)),
      ),
    );
    expect([bad.status, bad.body.issue[0].details.coding[0].code, bad.body.issue[0].expression]).toEqual([
      400,
      'CLAIMS_INVALID',
      ['purpose_of_use'],
    ]);
    const b = await auditEvents(t.b, auditB);
    const accepted = (jti: string) =>
      b.find((ae) => gatewayType(ae) === 'inbox.accepted' && entityId(ae, 'delivery') === jti)!;
    expect(accepted(before.jti)).not.toHaveProperty('purposeOfEvent');
    expect(purposes(accepted(signed.jti))).toEqual(['COC']);
    const { rows } = await t.b.gw.app.ctx.pool.query<{ jti: string; purpose_of_use: string[] | null }>(
      'SELECT jti, purpose_of_use FROM inbox_messages WHERE sender = $1',
      [soft.id],
    );
    expect(Object.fromEntries(rows.map((r) => [r.jti, r.purpose_of_use]))).toEqual({
      [before.jti]: null,
      [signed.jti]: ['COC'],
    });
    expect(b.filter((ae) => gatewayType(ae) === 'inbox.refused').at(0)?.outcomeDesc).toBe('CLAIMS_INVALID');
  });

  it('entries naming one blinded patient claim the Patient and disclosure profiles; every entry still verifies', async () => {
    const patient = { blind: 'q2VlZ3JhZGVkLWJsaW5k', key: 'blind-1' };
    const indexes = await inTransaction(t.b.gw.app.ctx.pool, (db) =>
      appendAudit(db, [
        {
          type: 'inbox.accepted',
          outcome: 'success',
          agent: { type: 'partner', id: aOrg, network: '127.0.0.1' },
          entity: [{ type: 'inbox-message', id: randomUUID(), digest: 'sha-256=AA' }],
          purposeOfUse: ['TREAT'],
          patients: [patient],
        },
        {
          type: 'inbox.read',
          outcome: 'success',
          agent: { type: 'client', id: t.b.ehr.id, network: '127.0.0.1' },
          entity: [{ type: 'inbox-message', id: randomUUID() }],
          patients: [patient],
        },
      ]),
    );
    const served = await Promise.all(
      indexes.map(
        async (i) =>
          (await request(t.b.gw.app.server).get(`/fhir/AuditEvent/${i}`).set('authorization', auditB).expect(200))
            .body as AuditEvent,
      ),
    );
    expect(served.map(claim)).toEqual([['IHE.BasicAudit.PrivacyDisclosure.Recipient'], ['IHE.BasicAudit.PatientRead']]);
    for (const ae of served) {
      expect([r4Errors(ae), balpErrors(ae)]).toEqual([[], []]);
      expect(ae.entity?.find((x) => x.type?.code === '1')).toMatchObject({
        what: { identifier: { system: 'urn:fhir-gateway:blinded-patient', value: 'blind-1:q2VlZ3JhZGVkLWJsaW5k' } },
        role: { code: '1' },
      });
    }
    // Search by a BALP code finds them; the whole log, old entries and new, verifies offline.
    const disclosures = await request(t.b.gw.app.server)
      .get('/fhir/AuditEvent?subtype=http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle|disclose')
      .set('authorization', auditB)
      .expect(200);
    expect((disclosures.body.entry as Array<{ resource: AuditEvent }>).map((e) => gatewayType(e.resource))).toEqual(
      expect.arrayContaining(['inbox.accepted']),
    );
    expect(
      (disclosures.body.entry as Array<{ resource: AuditEvent }>).every(
        (e) => gatewayType(e.resource) === 'inbox.accepted',
      ),
    ).toBe(true);
    const pack = await request(t.b.gw.app.server).get('/audit/export').set('authorization', auditB).expect(200);
    const report = await verifyEvidencePack(pack.body, nodeVerifyDeps);
    expect([report.ok, report.problem]).toEqual([true, undefined]);
  });

  it('gateway clients add|update --purpose-of-use set the default a client submission carries', async () => {
    const env = cleanEnv({ DATABASE_URL: t.a.gw.databaseUrl, DATA_DIR: dir });
    const jwksFile = join(dir, 'ehr-p.jwks.json');
    writeFileSync(
      jwksFile,
      JSON.stringify({ keys: [{ ...(await exportJWK((await generateKeyPair('ES256')).publicKey)), kid: 'p1' }] }),
    );
    const base = ['clients', 'add', '--id', 'ehr-purpose', '--jwks-file', jwksFile, '--scope', 'system/Bundle.write'];
    const badCode = await runCli([...base, '--purpose-of-use', 'TREAT,NOPE'], env);
    expect([badCode.code, badCode.stderr]).toEqual([2, expect.stringContaining('PurposeOfUse value set')]);
    const added = await runCli([...base, '--purpose-of-use', 'PUBHLTH', '--purpose-of-use', 'HRESCH'], env);
    expect(added.code, added.stderr).toBe(0);
    const listed = async () =>
      (
        JSON.parse((await runCli(['clients', 'list', '--json'], env)).stdout) as Array<{
          id: string;
          purposeOfUse: string[];
        }>
      ).find((c) => c.id === 'ehr-purpose')?.purposeOfUse;
    expect(await listed()).toEqual(['PUBHLTH', 'HRESCH']);
    const update = await runCli(['clients', 'update', '--id', 'ehr-purpose', '--purpose-of-use', 'HOPERAT'], env);
    expect([update.code, update.stdout]).toEqual([0, expect.stringContaining('purpose of use: HOPERAT')]);
    expect(await listed()).toEqual(['HOPERAT']);
    const { rows } = await t.a.gw.app.ctx.pool.query<{ entry: string }>(
      `SELECT entry FROM audit_log WHERE type IN ('client.registered', 'client.updated') AND entry LIKE '%ehr-purpose%' ORDER BY idx`,
    );
    expect(
      rows.map((r) => JSON.parse(r.entry) as { agent: { type: string }; detail: { purpose_of_use: string } }),
    ).toEqual([
      expect.objectContaining({
        agent: expect.objectContaining({ type: 'user' }),
        detail: expect.objectContaining({ purpose_of_use: 'PUBHLTH HRESCH' }),
      }),
      expect.objectContaining({ detail: expect.objectContaining({ purpose_of_use: 'HOPERAT' }) }),
    ]);
  });
});

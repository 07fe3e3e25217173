import { describe, expect, it } from 'vitest';
import type { AuditEvent } from 'fhir/r4.js';
import { eventTypesFor, toAuditEvent, type LogEntry } from '../../src/audit/fhir.ts';
import { AUDIT_EVENTS, type AuditEventType } from '../../src/audit/events.ts';
import type { AuditInput } from '../../src/audit/append.ts';
import { r4Errors } from '../helpers/r4-validator.ts';
import { BALP, balpErrors, PROFILE_RULES } from '../helpers/balp.ts';
import { CLAIMABLE_PROFILES } from '../../src/audit/balp/patterns.ts';
import { capabilityStatement } from '../../plugins/routes/metadata.ts';

const observer = { org: 'https://gw-a.example', baseUrl: 'https://gw-a.example:8443' };
const US = { identifier: { system: 'urn:fhir-gateway:agent:gateway', value: observer.org }, display: observer.org };
const recorded = '2026-01-15T10:00:00.000Z';
const PATIENT = { blind: 'Zm9vYmFyYmF6', key: 'blind-key-1' };
const OTHER_PATIENT = { blind: 'cXV4cXV1eA', key: 'blind-key-1' };

type Agent = NonNullable<AuditInput['agent']>;
const client: Agent = { type: 'client', id: 'ehr-1', network: '10.0.0.5' };
const partner: Agent = { type: 'partner', id: 'https://gw-b.example', network: '192.0.2.7' };
const partnerInbox: Agent = { type: 'partner', id: 'https://gw-b.example', network: 'https://gw-b.example/inbox' };
const adminApi: Agent = { type: 'admin', id: 'ops-console', network: '10.0.0.9' };
const operator: Agent = { type: 'user', id: 'omar', network: '2001:db8::7' };
const cli: Agent = { type: 'user', id: 'cli:root' };
const gateway: Agent = { type: 'gateway', id: observer.org };
const ehrEndpoint: Agent = {
  type: 'endpoint',
  id: 'https://ehr.example/fhir/Bundle',
  network: 'https://ehr.example/fhir/Bundle',
};

/** Each event type as the pipeline that records it writes it: agent, objects, purpose where it travels. */
const SAMPLE: Record<AuditEventType, Pick<AuditInput, 'agent' | 'entity' | 'purposeOfUse' | 'detail'>> = {
  'intake.accepted': {
    agent: client,
    entity: [{ type: 'exchange', id: 'ex-1', digest: 'sha-256=AA' }],
    purposeOfUse: ['TREAT'],
    detail: { bundleType: 'message', entries: 3, recipients: 1, bytes: 1200 },
  },
  'intake.refused': { agent: client, detail: { code: 'PURPOSE_OF_USE_INVALID', status: 422, route: '/exchanges' } },
  'exchange.signed': {
    agent: gateway,
    entity: [
      { type: 'delivery', id: 'd-1' },
      { type: 'exchange', id: 'ex-1' },
    ],
    purposeOfUse: ['TREAT'],
    detail: { kid: 'sig-1', partner: 'https://gw-b.example' },
  },
  'exchange.sealed': {
    agent: gateway,
    entity: [{ type: 'delivery', id: 'd-1', digest: 'sha-256=BB' }],
    purposeOfUse: ['TREAT'],
  },
  'delivery.attempt': {
    agent: partnerInbox,
    entity: [
      { type: 'delivery', id: 'd-1' },
      { type: 'exchange', id: 'ex-1' },
    ],
    purposeOfUse: ['ETREAT'],
    detail: { attempt: 1, result: 'delivered', status: 200, error: null },
  },
  'delivery.receipt': {
    agent: partnerInbox,
    entity: [
      { type: 'delivery', id: 'd-1' },
      { type: 'exchange', id: 'ex-1' },
      { type: 'receipt', id: 'r-1' },
    ],
    purposeOfUse: ['ETREAT'],
  },
  'delivery.failed': { agent: partnerInbox, entity: [{ type: 'delivery', id: 'd-1' }], purposeOfUse: ['TREAT'] },
  'delivery.retried': { agent: operator, entity: [{ type: 'delivery', id: 'd-1' }] },
  'inbox.accepted': {
    agent: partner,
    entity: [
      { type: 'inbox-message', id: 'm-1', digest: 'sha-256=CC' },
      { type: 'delivery', id: 'd-1' },
    ],
    purposeOfUse: ['TREAT', 'COC'],
  },
  'inbox.duplicate': { agent: partner, entity: [{ type: 'inbox-message', id: 'm-1' }] },
  'inbox.refused': {
    agent: { type: 'anonymous', id: 'unauthenticated', network: '192.0.2.9' },
    entity: [{ type: 'envelope', id: 'sha-256=DD', digest: 'sha-256=DD' }],
    detail: { reason: 'JWE_MALFORMED', status: 400 },
  },
  'inbox.read': {
    agent: client,
    entity: [
      { type: 'inbox-message', id: 'm-1', digest: 'sha-256=CC' },
      { type: 'delivery', id: 'd-1' },
    ],
    purposeOfUse: ['TREAT'],
  },
  'inbox.acknowledged': { agent: client, entity: [{ type: 'inbox-message', id: 'm-1' }] },
  'inbox.forwarded': { agent: ehrEndpoint, entity: [{ type: 'inbox-message', id: 'm-1' }], detail: { status: 201 } },
  'inbox.forward-failed': { agent: ehrEndpoint, entity: [{ type: 'inbox-message', id: 'm-1' }] },
  'auth.failure': {
    agent: { type: 'anonymous', id: 'unknown', network: '10.0.0.5' },
    detail: { reason: 'invalid_token' },
  },
  'authz.denied': { agent: client, detail: { reason: 'missing_scope', route: '/exchanges' } },
  'request.refused': { agent: client, detail: { reason: 'INVALID_VALUE', parameter: 'date' } },
  'auth.token-issued': { agent: client, detail: { scope: 'system/Bundle.write', expires_in: 300 } },
  'sso.login': { agent: operator, detail: { via: 'sso' } },
  'sso.refused': { agent: operator, detail: { via: 'sso', reason: 'no_role' } },
  'compliance.login': { agent: operator, detail: { via: 'audit-ui' } },
  'compliance.unlocked': { agent: cli, entity: [{ type: 'audit-user', id: 'jane' }] },
  'client.registered': {
    agent: adminApi,
    entity: [{ type: 'client', id: 'ehr-2' }],
    detail: { scope: 'system/Bundle.write', receives_from: '', purpose_of_use: '' },
  },
  'client.updated': { agent: adminApi, entity: [{ type: 'client', id: 'ehr-2' }] },
  'client.disabled': { agent: adminApi, entity: [{ type: 'client', id: 'ehr-2' }] },
  'client.enabled': { agent: adminApi, entity: [{ type: 'client', id: 'ehr-2' }] },
  'tls.bound': { agent: adminApi, entity: [{ type: 'partner', id: 'p-1', digest: 'ab'.repeat(32) }] },
  'tls.unbound': { agent: adminApi, entity: [{ type: 'partner', id: 'p-1', digest: 'ab'.repeat(32) }] },
  'partner.added': { agent: adminApi, entity: [{ type: 'partner', id: 'p-1' }] },
  'partner.updated': { agent: adminApi, entity: [{ type: 'partner', id: 'p-1' }] },
  'partner.suspended': { agent: operator, entity: [{ type: 'partner', id: 'p-1' }] },
  'partner.resumed': { agent: operator, entity: [{ type: 'partner', id: 'p-1' }], detail: { requeued: 2 } },
  'partner.downgrade-detected': { agent: gateway, entity: [{ type: 'partner', id: 'p-1' }] },
  'partner.downgrade-decided': {
    agent: cli,
    entity: [{ type: 'partner', id: 'p-1' }],
    detail: { decision: 'allow-v1', cause: 'operator', requeued: 2 },
  },
  'partner.removed': { agent: adminApi, entity: [{ type: 'partner', id: 'p-1' }] },
  'partner-key.first-seen': { agent: partner, entity: [{ type: 'partner-key', id: 'kid-1' }] },
  'partner-key.changed': { agent: partner, entity: [{ type: 'partner-key', id: 'kid-1' }] },
  'partner-key.disappeared': { agent: partner, entity: [{ type: 'partner-key', id: 'kid-1' }] },
  'key.generated': { agent: gateway, entity: [{ type: 'key', id: 'k-1' }] },
  'key.published': { agent: gateway, entity: [{ type: 'key', id: 'k-1' }] },
  'key.activated': { agent: cli, entity: [{ type: 'key', id: 'k-1' }] },
  'key.deactivated': { agent: gateway, entity: [{ type: 'key', id: 'k-1' }] },
  'key.destroyed': { agent: gateway, entity: [{ type: 'key', id: 'k-1' }] },
  'evidence.served': { agent: partnerInbox, entity: [{ type: 'receipt', id: 'r-1' }], detail: { entries: 1 } },
  'evidence.refused': { agent: partnerInbox, detail: { code: 'EVIDENCE_REQUEST_INVALID', status: 400 } },
  'delivery.evidence': {
    agent: gateway,
    entity: [
      { type: 'delivery', id: 'd-1' },
      { type: 'receipt', id: 'r-1', digest: 'sha-256=CC' },
    ],
    detail: { partner: 'https://gw-b.example', index: 12 },
  },
  'partner-log.checkpoint': { agent: gateway, entity: [{ type: 'partner', id: 'https://gw-b.example' }] },
  'partner-log.inconsistent': {
    agent: gateway,
    entity: [{ type: 'partner', id: 'https://gw-b.example' }],
    detail: { reason: 'consistency proof does not hold' },
  },
  'partner-log.cleared': { agent: cli, entity: [{ type: 'partner', id: 'https://gw-b.example' }] },
  'sso.backchannel-logout': { agent: operator, detail: { sessions: 2 } },
  'sso.backchannel-refused': { agent: operator, detail: { reason: 'jti_replayed' } },
  'auth.factor-enrolled': { agent: operator, detail: { factor: 'passkey' } },
  'auth.factor-used': { agent: operator, detail: { factor: 'totp' } },
  'auth.factor-failed': { agent: operator, detail: { factor: 'totp', reason: 'reused' } },
  'auth.factors-reset': { agent: cli, entity: [{ type: 'audit-user', id: 'jane' }] },
  'auth.recovery-code-used': { agent: operator },
  'delivery.processed': {
    agent: partnerInbox,
    entity: [
      { type: 'delivery', id: 'd-1' },
      { type: 'processed-receipt', id: 'pr-1', digest: 'sha-256=DD' },
    ],
    detail: { via: 'acknowledged' },
  },
  'delivery.response': {
    agent: partnerInbox,
    entity: [
      { type: 'delivery', id: 'd-1' },
      { type: 'inbox-message', id: 'm-2' },
    ],
    detail: { code: 'ok' },
  },
  'processed-receipt.refused': { agent: partnerInbox, detail: { code: 'PROCESSED_RECEIPT_INVALID', status: 400 } },
  'inbox.processed': { agent: client, entity: [{ type: 'inbox-message', id: 'm-1' }], detail: { via: 'acknowledged' } },
  'processed-receipt.attempt': {
    agent: partnerInbox,
    entity: [{ type: 'inbox-message', id: 'm-1' }],
    detail: { status: 204, attempt: 1 },
  },
  'processed-receipt.failed': {
    agent: gateway,
    entity: [{ type: 'inbox-message', id: 'm-1' }],
    detail: { reason: 'retry budget spent' },
  },
  'notification.sent': {
    agent: client,
    entity: [
      { type: 'notification', id: 'n-1' },
      { type: 'exchange', id: 'x-1' },
    ],
    detail: { event: 'delivered', channel: 'response-url', attempt: 1, status: 200 },
  },
  'notification.failed': {
    agent: client,
    entity: [
      { type: 'notification', id: 'n-1' },
      { type: 'exchange', id: 'x-1' },
    ],
    detail: { event: 'failed', channel: 'response-url', attempts: 3, reason: 'retries exhausted' },
  },
  'subscription.created': {
    agent: client,
    entity: [{ type: 'subscription', id: 's-1' }],
    detail: { status: 'requested', payload: 'id-only', heartbeat: 60, endpoint: 'https://ehr.example', exchange: null },
  },
  'subscription.updated': {
    agent: client,
    entity: [{ type: 'subscription', id: 's-1' }],
    detail: { status: 'off', payload: 'empty', heartbeat: null, endpoint: 'https://ehr.example', events: 'failed' },
  },
  'subscription.deleted': { agent: client, entity: [{ type: 'subscription', id: 's-1' }] },
  'subscription.refused': { agent: client, detail: { code: 'UNPROCESSABLE', status: 422, method: 'POST' } },
  'content.purged': {
    agent: gateway,
    entity: [
      { type: 'delivery', id: 'd-1', digest: 'sha-256=BB' },
      { type: 'inbox-message', id: 'm-1', digest: 'sha-256=AA' },
    ],
    detail: { kind: 'outbound', count: 2 },
  },
  'retention.held': { agent: cli, entity: [{ type: 'exchange', id: 'ex-1' }], detail: { reason: 'legal hold' } },
  'retention.released': { agent: cli, entity: [{ type: 'exchange', id: 'ex-1' }] },
  'disclosures.queried': { agent: operator, detail: { from: '2026-01-01', to: '2026-12-01', found: 2 } },
};

let index = 0;
const entry = (type: AuditEventType, over: Partial<LogEntry> = {}): LogEntry => ({
  type,
  outcome: AUDIT_EVENTS[type].outcome[0],
  ...SAMPLE[type],
  index: index++,
  recorded,
  ...over,
});
const render = (e: LogEntry) => toAuditEvent(e, observer);
const profileOf = (ae: AuditEvent) => ae.meta?.profile?.map((p) => p.slice(BALP.length));
const agentTyped = (ae: AuditEvent, code: string) =>
  ae.agent.filter((a) => a.type?.coding?.some((c) => c.code === code));

describe('AuditEvents: valid R4, and every BALP profile claimed holds its required elements', () => {
  it('every event type, every outcome, with none, one and two patients', () => {
    for (const type of Object.keys(AUDIT_EVENTS) as AuditEventType[])
      for (const outcome of AUDIT_EVENTS[type].outcome)
        for (const patients of [[], [PATIENT], [PATIENT, OTHER_PATIENT]]) {
          const ae = render(entry(type, { outcome, patients }));
          expect(r4Errors(ae), `${type} ${outcome} ${patients.length}`).toEqual([]);
          expect(balpErrors(ae), `${type} ${outcome} ${patients.length}`).toEqual([]);
          expect(ae.subtype?.at(-1), type).toEqual({ system: 'urn:fhir-gateway:audit-event-type', code: type });
          expect(JSON.stringify(ae)).not.toContain('IHE.BasicAudit.Minimal');
          expect(JSON.stringify(ae)).not.toMatch(/:""/);
        }
  });

  it('the CapabilityStatement declares exactly the profiles entries claim, and the checks know each of them', () => {
    const claimed = new Set<string>();
    for (const type of Object.keys(AUDIT_EVENTS) as AuditEventType[])
      for (const patients of [[], [PATIENT]])
        for (const p of render(entry(type, { patients })).meta?.profile ?? []) claimed.add(p);
    expect([...claimed].sort()).toEqual([...CLAIMABLE_PROFILES].sort());
    for (const p of CLAIMABLE_PROFILES) expect(Object.keys(PROFILE_RULES)).toContain(p.slice(BALP.length));
    const auditEvent = capabilityStatement('https://gw.example').rest?.[0]?.resource?.find(
      (r) => r.type === 'AuditEvent',
    );
    expect(auditEvent?.supportedProfile).toEqual(CLAIMABLE_PROFILES);
  });

  it('the BALP checks refuse what the profiles refuse', () => {
    const claimed = (type: AuditEventType) => render(entry(type, { patients: [PATIENT] }));
    const broken: Array<[AuditEvent, (ae: AuditEvent) => void, RegExp]> = [
      [claimed('intake.accepted'), (ae) => delete ae.agent[0]!.network, /agent\[client\]\.network is required/],
      [claimed('intake.accepted'), (ae) => (ae.outcome = '4'), /outcome must be 0/],
      [
        claimed('intake.accepted'),
        (ae) => ae.entity!.push({ ...ae.entity![2]! }),
        /entity\[patient\]: 1\.\.1, found 2/,
      ],
      [
        claimed('inbox.read'),
        (ae) => (ae.agent[0]!.type = { coding: [{ code: '110153' }] }),
        /agent\[client\]: 1\.\.1/,
      ],
      [claimed('delivery.attempt'), (ae) => (ae.agent[0]!.who = { display: 'elsewhere' }), /val-audit-source/],
      [claimed('inbox.accepted'), (ae) => (ae.subtype = ae.subtype!.slice(1)), /subtype lacks/],
      [claimed('inbox.accepted'), (ae) => (ae.entity![2]!.what = { identifier: { value: 'x' } }), /Patient reference/],
      [
        claimed('partner.suspended'),
        (ae) => (ae.agent[1]!.network = { address: '::1', type: '2' }),
        /user\]\.network is not allowed/,
      ],
      [
        claimed('key.generated'),
        (ae) => (ae.meta = { profile: [`${BALP}IHE.BasicAudit.Minimal`] }),
        /not a BALP profile/,
      ],
    ];
    for (const [ae, breakIt, why] of broken) {
      expect(balpErrors(ae)).toEqual([]);
      breakIt(ae);
      expect(balpErrors(ae).join('\n')).toMatch(why);
    }
  });

  it('claims the profile each pattern names, only when the entry holds what it requires', () => {
    const claims: Array<[LogEntry, string[] | undefined]> = [
      [entry('intake.accepted', { patients: [PATIENT] }), ['IHE.BasicAudit.PatientCreate']],
      [entry('intake.accepted'), ['IHE.BasicAudit.Create']],
      // BALP asks one AuditEvent per patient: an entry about several claims the base profile only.
      [entry('intake.accepted', { patients: [PATIENT, OTHER_PATIENT] }), ['IHE.BasicAudit.Create']],
      // Written before client addresses were recorded: the client agent has no network, so no claim.
      [entry('intake.accepted', { agent: { type: 'client', id: 'ehr-1' } }), undefined],
      // A refusal: the RESTful profiles fix outcome to success.
      [entry('intake.refused'), undefined],
      [entry('delivery.attempt', { patients: [PATIENT] }), ['IHE.BasicAudit.PrivacyDisclosure.Source']],
      [
        entry('delivery.attempt', { outcome: 'minor-failure', patients: [PATIENT] }),
        ['IHE.BasicAudit.PrivacyDisclosure.Source'],
      ],
      [entry('delivery.attempt'), undefined],
      [entry('delivery.attempt', { patients: [PATIENT, OTHER_PATIENT] }), undefined],
      [entry('inbox.accepted', { patients: [PATIENT] }), ['IHE.BasicAudit.PrivacyDisclosure.Recipient']],
      [entry('inbox.read', { patients: [PATIENT] }), ['IHE.BasicAudit.PatientRead']],
      [entry('inbox.read'), ['IHE.BasicAudit.Read']],
      [entry('inbox.read', { outcome: 'serious-failure' }), undefined],
      [entry('inbox.acknowledged'), ['IHE.BasicAudit.Update']],
      [entry('inbox.forwarded', { patients: [PATIENT] }), ['IHE.BasicAudit.PatientCreate']],
      [entry('inbox.forward-failed', { outcome: 'minor-failure' }), undefined],
      [entry('client.registered'), ['IHE.BasicAudit.Create']],
      [entry('client.registered', { agent: cli }), undefined],
      [entry('partner.suspended'), ['IHE.BasicAudit.Update']],
      [entry('partner.removed'), ['IHE.BasicAudit.Delete']],
      [entry('tls.unbound'), ['IHE.BasicAudit.Delete']],
      [entry('auth.token-issued'), undefined],
      [entry('key.generated'), undefined],
      [entry('compliance.login'), undefined],
    ];
    for (const [e, want] of claims) {
      const ae = render(e);
      expect(profileOf(ae), `${e.type} ${e.outcome} ${e.patients?.length ?? 0}`).toEqual(want);
      expect(balpErrors(ae)).toEqual([]);
    }
  });

  it('a send: this gateway is the source (its observer), the partner the recipient at the inbox it was sent to', () => {
    const ae = render(entry('delivery.attempt', { patients: [PATIENT] }));
    expect(ae).toMatchObject({
      type: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110106' },
      subtype: [{ system: 'http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle', code: 'disclose' }, {}],
      action: 'R',
      source: { observer: US },
    });
    expect(agentTyped(ae, '110153')).toEqual([
      expect.objectContaining({ who: US, network: { address: observer.baseUrl, type: '5' }, requestor: true }),
    ]);
    expect(agentTyped(ae, '110152')).toEqual([
      expect.objectContaining({
        who: { identifier: { system: 'urn:fhir-gateway:agent:partner', value: 'https://gw-b.example' } },
        network: { address: 'https://gw-b.example/inbox', type: '5' },
        requestor: false,
      }),
    ]);
  });

  it('a receipt of one: the partner is the source (from its address), this gateway the recipient and observer', () => {
    const ae = render(entry('inbox.accepted', { patients: [PATIENT] }));
    expect(ae.type).toMatchObject({ code: '110107' });
    expect(ae.action).toBe('C');
    expect(agentTyped(ae, '110153')[0]).toMatchObject({
      who: { identifier: { system: 'urn:fhir-gateway:agent:partner', value: 'https://gw-b.example' } },
      network: { address: '192.0.2.7', type: '2' },
    });
    expect(agentTyped(ae, '110152')[0]?.who).toEqual(ae.source.observer);
  });

  it('a read: the reading client is the destination, this gateway the source; systems are never human users', () => {
    const ae = render(entry('inbox.read'));
    expect(agentTyped(ae, '110152')[0]?.who?.identifier).toEqual({
      system: 'urn:fhir-gateway:agent:client',
      value: 'ehr-1',
    });
    expect(agentTyped(ae, '110153')[0]?.who).toEqual(US);
    for (const type of Object.keys(AUDIT_EVENTS) as AuditEventType[]) {
      const humans = agentTyped(render(entry(type)), 'humanuser').concat(agentTyped(render(entry(type)), 'AUT'));
      for (const h of humans) expect(h.who?.identifier?.system, type).toBe('urn:fhir-gateway:agent:user');
    }
  });

  it('a person acts through a browser: the browser is the client (with the address), the person the user (without)', () => {
    const ae = render(entry('partner.suspended'));
    expect(agentTyped(ae, '110153')).toEqual([
      {
        type: expect.anything(),
        who: { display: 'web browser' },
        requestor: false,
        network: { address: '2001:db8::7', type: '2' },
      },
    ]);
    const [user] = agentTyped(ae, 'AUT');
    expect(user).toMatchObject({
      who: { identifier: { system: 'urn:fhir-gateway:agent:user', value: 'omar' } },
      requestor: true,
    });
    expect(user).not.toHaveProperty('network');
  });

  it('purpose of use: AuditEvent.purposeOfEvent and the requesting agent, as v3-ActReason codings', () => {
    const ae = render(entry('inbox.accepted'));
    const concepts = [
      {
        coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'TREAT', display: 'treatment' }],
      },
      {
        coding: [
          {
            system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason',
            code: 'COC',
            display: 'coordination of care',
          },
        ],
      },
    ];
    expect(ae.purposeOfEvent).toEqual(concepts);
    expect(ae.agent.filter((a) => a.requestor)).toEqual([expect.objectContaining({ purposeOfUse: concepts })]);
    expect(render(entry('delivery.attempt')).agent.find((a) => a.requestor)?.who).toEqual(US);
    // No purpose recorded (a sender that signs none, an older entry): the elements are absent, not empty.
    const none = render(entry('inbox.accepted', { purposeOfUse: undefined }));
    expect(none).not.toHaveProperty('purposeOfEvent');
    expect(none.agent.some((a) => 'purposeOfUse' in a)).toBe(false);
  });

  it('patients: BALP patient entities by blinded identifier, Person / Patient, key and blind in the value', () => {
    const ae = render(entry('inbox.read', { patients: [PATIENT, OTHER_PATIENT] }));
    expect(ae.entity?.filter((x) => x.type?.code === '1')).toEqual([
      {
        what: {
          type: 'Patient',
          identifier: { system: 'urn:fhir-gateway:blinded-patient', value: 'blind-key-1:Zm9vYmFyYmF6' },
        },
        type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '1', display: 'Person' },
        role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1', display: 'Patient' },
      },
      expect.objectContaining({
        what: {
          type: 'Patient',
          identifier: { system: 'urn:fhir-gateway:blinded-patient', value: 'blind-key-1:cXV4cXV1eA' },
        },
      }),
    ]);
    // The object of the event is the one System Object; what it relates to is Other.
    expect(ae.entity?.filter((x) => x.type?.code === '2').map((x) => x.what?.identifier?.value)).toEqual(['m-1']);
  });

  it('entries written before this rendering (an admin person, no addresses, no purpose) still render, unclaimed', () => {
    const stored =
      '{"agent":{"id":"cli:root","type":"admin"},"entity":[{"id":"ehr-9","type":"client"}],"index":41,"outcome":"success","recorded":"2025-06-01T08:00:00.000Z","type":"client.registered"}';
    const ae = render(JSON.parse(stored) as LogEntry);
    expect(r4Errors(ae)).toEqual([]);
    expect(ae).not.toHaveProperty('meta');
    expect(ae.subtype?.at(-1)?.code).toBe('client.registered');
    // A type the gateway no longer writes is application activity, never an error.
    const gone = render({ ...(JSON.parse(stored) as LogEntry), type: 'legacy.thing' as AuditEventType });
    expect(gone.type).toMatchObject({ code: '110100' });
    expect(r4Errors(gone)).toEqual([]);
  });
});

describe('AuditEvent: no empty strings, no empty arrays', () => {
  const refused = (detail: LogEntry['detail']) =>
    entry('intake.refused', { agent: { type: 'client', id: 'ehr-1' }, ...(detail === undefined ? {} : { detail }) });

  it('an empty detail value is left out; an empty reason gives no outcomeDesc', () => {
    const e = render(refused({ reason: '', route: '/exchanges', status: 400 }));
    expect(e).not.toHaveProperty('outcomeDesc');
    const detail = e.entity?.find((x) => x.description === 'event detail (no PHI)')?.detail;
    expect(detail).toEqual([
      { type: 'route', valueString: '/exchanges' },
      { type: 'status', valueString: '400' },
    ]);
    expect(r4Errors(e)).toEqual([]);
  });

  it('a detail with nothing left (or an empty one) adds no detail entity', () => {
    for (const d of [{}, { reason: '' }] as Array<LogEntry['detail']>) {
      const e = render(refused(d));
      expect(e.entity?.map((x) => x.description)).toEqual(['position in the tamper-evident audit log']);
    }
    expect(render(refused({ reason: 'INVALID_JSON' })).outcomeDesc).toBe('INVALID_JSON');
  });

  it('client.registered with no routing and no purpose has no empty valueString', () => {
    const e = render(entry('client.registered'));
    expect(e.entity?.find((x) => x.description === 'event detail (no PHI)')?.detail).toEqual([
      { type: 'scope', valueString: 'system/Bundle.write' },
    ]);
  });
});

describe('AuditEvent search reads the same patterns as the rendering', () => {
  it('type and subtype codes name the gateway types rendered with them', () => {
    const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
    expect(eventTypesFor('type', DCM, '110106')).toEqual([
      'exchange.signed',
      'exchange.sealed',
      'delivery.attempt',
      'delivery.receipt',
      'delivery.failed',
      'delivery.evidence',
      'inbox.processed',
      'processed-receipt.attempt',
      'processed-receipt.failed',
      'notification.sent',
      'notification.failed',
    ]);
    expect(eventTypesFor('type', undefined, 'rest')).toContain('inbox.read');
    expect(eventTypesFor('type', 'http://example.org', 'rest')).toEqual([]);
    expect(eventTypesFor('subtype', undefined, 'disclose')).toEqual(['delivery.attempt', 'inbox.accepted']);
    expect(eventTypesFor('subtype', 'http://hl7.org/fhir/restful-interaction', 'read')).toEqual(['inbox.read']);
    expect(eventTypesFor('subtype', 'urn:fhir-gateway:audit-event-type', 'inbox.read')).toEqual(['inbox.read']);
    expect(eventTypesFor('type', undefined, 'no-such-code')).toEqual([]);
    for (const type of Object.keys(AUDIT_EVENTS) as AuditEventType[]) {
      const ae = render(entry(type));
      expect(eventTypesFor('type', ae.type.system, ae.type.code!)).toContain(type);
      for (const s of ae.subtype ?? []) expect(eventTypesFor('subtype', s.system, s.code!)).toContain(type);
    }
  });
});

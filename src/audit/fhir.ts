import type { AuditEvent, Bundle } from 'fhir/r4.js';
import type { AuditInput, AuditOutcome } from './append.ts';

/**
 * Our log entries as FHIR R4 AuditEvent resources, following the IHE Basic
 * Audit Log Patterns (BALP): DICOM event type, the gateway's own event code as
 * subtype, agents with requestor flags, this gateway as source.observer, and
 * entities identified by identifier (never by content) with their digests.
 */
export const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
export const EVENT_CODES = 'urn:fhir-gateway:audit-event-type';
export const AGENT_IDS = 'urn:fhir-gateway:agent';
export const ENTITY_IDS = 'urn:fhir-gateway:entity';
export const LEAF_INDEX = 'urn:ietf:rfc:9162:leaf-index';

export const OUTCOME_CODE: Record<AuditOutcome, '0' | '4' | '8' | '12'> = {
  success: '0',
  'minor-failure': '4',
  'serious-failure': '8',
  'major-failure': '12',
};

/** The stored entry: the AuditInput plus its leaf index and UTC time. */
export interface LogEntry extends AuditInput {
  index: number;
  recorded: string;
}

/** DICOM audit event types (DCM) by the first part of the dotted gateway event type. */
export const DICOM_TYPES: Array<{ code: string; display: string; prefixes: string[] }> = [
  { code: '110114', display: 'User Authentication', prefixes: ['auth', 'authz', 'compliance'] },
  { code: '110113', display: 'Security Alert', prefixes: ['key', 'keys', 'admin', 'partner', 'client', 'audit'] },
  { code: '110107', display: 'Import', prefixes: ['inbox', 'inbound', 'receive'] },
  { code: '110112', display: 'Query', prefixes: ['disclosures'] },
  {
    code: '110106',
    display: 'Export',
    prefixes: ['intake', 'delivery', 'sign', 'seal', 'receipt', 'exchange', 'outbound'],
  },
];
export const APPLICATION_ACTIVITY = { code: '110100', display: 'Application Activity' };

export function dicomType(type: string): { code: string; display: string } {
  const [head = ''] = type.split('.'); // split always yields a first element
  const t = DICOM_TYPES.find((d) => d.prefixes.includes(head));
  return t ? { code: t.code, display: t.display } : APPLICATION_ACTIVITY;
}

/** AuditEvent.action: C create, R read, U update, D delete, E execute. */
function action(type: string): 'C' | 'R' | 'U' | 'D' | 'E' {
  if (/\.(accepted|created|generated|added|received)$/.test(type)) return 'C';
  if (/\.(read|exported)$/.test(type)) return 'R';
  if (/\.(updated|activated|deactivated|rotated)$/.test(type)) return 'U';
  if (/\.(deleted|destroyed|removed)$/.test(type)) return 'D';
  return 'E';
}

export function toAuditEvent(e: LogEntry, observer: { org: string; baseUrl: string }): AuditEvent {
  const agents: NonNullable<AuditEvent['agent']> = [];
  if (e.agent) {
    agents.push({
      type: {
        coding: [
          {
            system: 'http://terminology.hl7.org/CodeSystem/extra-security-role-type',
            code: e.agent.type === 'partner' || e.agent.type === 'gateway' ? 'datacollector' : 'humanuser',
            display: e.agent.type,
          },
        ],
      },
      who: { identifier: { system: `${AGENT_IDS}:${e.agent.type}`, value: e.agent.id } },
      requestor: e.agent.type !== 'gateway',
      ...(e.agent.network
        ? { network: { address: e.agent.network, type: /^[\d.]+$|:/.test(e.agent.network) ? '2' : '1' } }
        : {}),
    } as NonNullable<AuditEvent['agent']>[number]);
  }
  // BALP: the recording application is always an agent too.
  agents.push({
    type: { coding: [{ system: DCM, code: '110153', display: 'Source Role ID' }] },
    who: { identifier: { system: 'urn:ietf:rfc:3986', value: observer.baseUrl }, display: observer.org },
    requestor: false,
  });
  // FHIR JSON has no empty strings and no empty arrays: an empty detail value (or none at all) is left out.
  const details = Object.entries(e.detail ?? {})
    .map(([k, v]) => ({ type: k, valueString: v === null ? 'null' : String(v) }))
    .filter((d) => d.type !== '' && d.valueString !== '');
  return {
    resourceType: 'AuditEvent',
    id: String(e.index),
    meta: { profile: ['https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Minimal'] },
    type: { system: DCM, ...dicomType(e.type) },
    subtype: [{ system: EVENT_CODES, code: e.type }],
    action: action(e.type),
    recorded: e.recorded,
    outcome: OUTCOME_CODE[e.outcome],
    ...(e.detail && typeof e.detail.reason === 'string' && e.detail.reason !== ''
      ? { outcomeDesc: e.detail.reason }
      : {}),
    agent: agents,
    source: {
      site: observer.org,
      observer: { identifier: { system: 'urn:ietf:rfc:3986', value: observer.baseUrl }, display: observer.org },
      type: [
        {
          system: 'http://terminology.hl7.org/CodeSystem/security-source-type',
          code: '4',
          display: 'Application Server',
        },
      ],
    },
    entity: [
      {
        what: { identifier: { system: LEAF_INDEX, value: String(e.index) } },
        type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '4', display: 'Other' },
        description: 'position in the tamper-evident audit log',
      },
      ...(e.entity ?? []).map((x) => ({
        what: { identifier: { system: `${ENTITY_IDS}:${x.type}`, value: x.id } },
        type: {
          system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type',
          code: '2',
          display: 'System Object',
        },
        ...(x.digest ? { detail: [{ type: 'digest', valueString: x.digest }] } : {}),
      })),
      ...(details.length
        ? [
            {
              type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '4', display: 'Other' },
              description: 'event detail (no PHI)',
              detail: details,
            },
          ]
        : []),
    ],
  };
}

export function searchsetBundle(events: AuditEvent[], total: number, self: string, next?: string): Bundle {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    total,
    link: [{ relation: 'self', url: self }, ...(next ? [{ relation: 'next', url: next }] : [])],
    // An empty search has no entry: FHIR elements are never empty arrays.
    ...(events.length
      ? {
          entry: events.map((r) => ({
            fullUrl: `${self.split('/fhir/')[0]}/fhir/AuditEvent/${r.id}`,
            resource: r,
            search: { mode: 'match' as const },
          })),
        }
      : {}),
  };
}

import type { AuditEvent, Bundle } from 'fhir/r4.js';
import type { AuditInput, AuditOutcome } from './append.ts';
import { AUDIT_EVENTS, type AuditEventType } from './events.ts';
import { claimedProfile, PATTERNS, type Coding, type Pattern } from './balp/patterns.ts';
import { agentsFor, gatewayReference, type Observer } from './balp/agents.ts';
import { detailEntity, leafEntity, namesItsObject, objectEntities, patientEntities } from './balp/entities.ts';
import { purposeConcept } from '../fhir/purpose-of-use.ts';

export { DCM } from './balp/patterns.ts';
export { AGENT_IDS } from './balp/agents.ts';
export { BLINDED_PATIENT, ENTITY_IDS, LEAF_INDEX } from './balp/entities.ts';

/**
 * Our log entries as FHIR R4 AuditEvent resources, following the IHE Basic
 * Audit Log Patterns (BALP): each event type's pattern (src/audit/events.ts,
 * src/audit/balp/) fixes type, subtypes, action and agent roles; an entry
 * claims its pattern's profile in meta.profile only when it holds all the
 * profile requires. Entities are identifiers (never content) with digests.
 */
export const EVENT_CODES = 'urn:fhir-gateway:audit-event-type';

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

/** An entry type's pattern; a type this gateway no longer writes renders as plain application activity. */
export function patternOf(type: string): Pattern {
  const spec = (AUDIT_EVENTS as Record<string, { balp: keyof typeof PATTERNS } | undefined>)[type];
  return PATTERNS[spec?.balp ?? 'ApplicationActivity'];
}

/** The gateway's own event code, after the pattern's standard subtypes. */
const ownCode = (type: string): Coding => ({ system: EVENT_CODES, code: type });

export function toAuditEvent(e: LogEntry, observer: Observer): AuditEvent {
  const pattern = patternOf(e.type);
  const purposes = (e.purposeOfUse ?? []).map(purposeConcept);
  const { agents, parties } = agentsFor(pattern, e.agent, observer, purposes);
  const patients = e.patients ?? [];
  const profile = claimedProfile(pattern, {
    success: e.outcome === 'success',
    patients: patients.length,
    data: namesItsObject(e.entity),
    parties,
  });
  const [subject, ...related] = objectEntities(e.entity ?? []);
  const reason = e.detail?.reason;
  return {
    resourceType: 'AuditEvent',
    id: String(e.index),
    ...(profile ? { meta: { profile: [profile] } } : {}),
    type: pattern.type,
    subtype: [...pattern.subtype, ownCode(e.type)],
    action: pattern.action,
    recorded: e.recorded,
    outcome: OUTCOME_CODE[e.outcome],
    ...(typeof reason === 'string' && reason !== '' ? { outcomeDesc: reason } : {}),
    ...(purposes.length ? { purposeOfEvent: purposes } : {}),
    agent: agents,
    source: {
      site: observer.org,
      observer: gatewayReference(observer),
      type: [
        {
          system: 'http://terminology.hl7.org/CodeSystem/security-source-type',
          code: '4',
          display: 'Application Server',
        },
      ],
    },
    entity: [
      leafEntity(e.index),
      ...(subject ? [subject] : []),
      ...patientEntities(patients),
      ...related,
      ...detailEntity(e.detail),
    ],
  };
}

/**
 * The gateway event types an AuditEvent `type` or `subtype` token matches:
 * a gateway type itself, or a code (with or without its system) the types'
 * patterns render there. For search: the rendering and the search read the
 * same patterns.
 */
export function eventTypesFor(element: 'type' | 'subtype', system: string | undefined, code: string): AuditEventType[] {
  const all = Object.keys(AUDIT_EVENTS) as AuditEventType[];
  if ((system === undefined || system === EVENT_CODES) && all.includes(code as AuditEventType))
    return [code as AuditEventType];
  const matches = (c: Coding) => c.code === code && (system === undefined || c.system === system);
  return all.filter((t) => {
    const p = patternOf(t);
    return element === 'type' ? matches(p.type) : p.subtype.some(matches);
  });
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

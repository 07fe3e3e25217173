import type { Coding } from './patterns.ts';

/** Objects are identified by their kind (exchange, delivery…) and their id under it. */
export const ENTITY_IDS = 'urn:fhir-gateway:entity';
export const LEAF_INDEX = 'urn:ietf:rfc:9162:leaf-index';
/**
 * A blinded patient identifier: `value` is `{key}:{blind}`, the id of the
 * HSM key and the keyed HMAC of the patient's identifier under it. Never
 * reversible; equal values mean the same patient under the same key.
 */
export const BLINDED_PATIENT = 'urn:fhir-gateway:blinded-patient';

const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';

const entityType = (code: string, display: string): Coding => ({ system: ENTITY_TYPE, code, display });
const role = (code: string, display: string): Coding => ({ system: OBJECT_ROLE, code, display });

const PERSON = entityType('1', 'Person');
const SYSTEM_OBJECT = entityType('2', 'System Object');
const OTHER = entityType('4', 'Other');
const DOMAIN_RESOURCE = role('4', 'Domain Resource');
const SECURITY_RESOURCE = role('13', 'Security Resource');

/**
 * The role each kind of object plays. What an event is about (its first
 * entity) takes a role of BALP's RESTful object roles (Domain Resource,
 * Report, Job) where a RESTful pattern names it: content, partners and
 * client registrations are resources served over the API.
 */
const ROLE_OF: Record<string, Coding> = {
  exchange: DOMAIN_RESOURCE,
  'imaging-exchange': DOMAIN_RESOURCE,
  'imaging-content': DOMAIN_RESOURCE,
  'inbox-message': DOMAIN_RESOURCE,
  envelope: DOMAIN_RESOURCE,
  delivery: role('20', 'Job'),
  receipt: role('3', 'Report'),
  partner: DOMAIN_RESOURCE,
  client: DOMAIN_RESOURCE,
  key: SECURITY_RESOURCE,
  'partner-key': SECURITY_RESOURCE,
  'audit-user': role('11', 'Security User Entity'),
};

export interface Entity {
  what?: { type?: 'Patient'; identifier: { system: string; value: string } };
  type: Coding;
  role?: Coding;
  description?: string;
  detail?: Array<{ type: string; valueString: string }>;
}

export const leafEntity = (index: number): Entity => ({
  what: { identifier: { system: LEAF_INDEX, value: String(index) } },
  type: OTHER,
  description: 'position in the tamper-evident audit log',
});

/**
 * The objects an entry names, by identifier only (never content), with their
 * digests: the first is what the event is about (a System Object), the others
 * the identifiers it relates it to.
 */
export const objectEntities = (objects: ReadonlyArray<{ type: string; id: string; digest?: string }>): Entity[] =>
  objects.map((x, i) => ({
    what: { identifier: { system: `${ENTITY_IDS}:${x.type}`, value: x.id } },
    type: i === 0 ? SYSTEM_OBJECT : OTHER,
    ...(ROLE_OF[x.type] ? { role: ROLE_OF[x.type] } : {}),
    ...(x.digest ? { detail: [{ type: 'digest', valueString: x.digest }] } : {}),
  }));

/** The patients whose records the event concerns: BALP's patient entity, by blinded identifier. */
export const patientEntities = (patients: ReadonlyArray<{ blind: string; key: string }>): Entity[] =>
  patients.map((p) => ({
    what: { type: 'Patient', identifier: { system: BLINDED_PATIENT, value: `${p.key}:${p.blind}` } },
    type: PERSON,
    role: role('1', 'Patient'),
  }));

/** Small non-PHI facts. FHIR JSON has no empty strings or arrays: an empty value (or none at all) is left out. */
export function detailEntity(detail: Record<string, string | number | boolean | null> | undefined): Entity[] {
  const details = Object.entries(detail ?? {})
    .map(([k, v]) => ({ type: k, valueString: v === null ? 'null' : String(v) }))
    .filter((d) => d.type !== '' && d.valueString !== '');
  return details.length ? [{ type: OTHER, description: 'event detail (no PHI)', detail: details }] : [];
}

/** Whether an entry names the object of its event with a known role (what BALP's data entity requires). */
export const namesItsObject = (objects: ReadonlyArray<{ type: string }> | undefined): boolean =>
  objects?.[0] !== undefined && Object.hasOwn(ROLE_OF, objects[0].type);

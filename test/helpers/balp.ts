/**
 * The required elements of the IHE Basic Audit Log Patterns (BALP 1.1.4)
 * profiles the gateway claims, checked element by element. The
 * StructureDefinitions are not published as an npm package, so their
 * constraints are written out here from the IG's FSH sources
 * (profiles.ihe.net/ITI/BALP, IHE/ITI.BasicAudit input/fsh), independently
 * of the gateway's own pattern table: a test that reads both could not fail.
 */
export const BALP = 'https://profiles.ihe.net/ITI/BALP/StructureDefinition/';

type Coding = { system?: string; code?: string };
type Concept = { coding?: Coding[] };
type Reference = {
  reference?: string;
  type?: string;
  identifier?: { system?: string; value?: string };
  display?: string;
};
interface Agent {
  type?: Concept;
  who?: Reference;
  requestor?: boolean;
  network?: { address?: string; type?: string };
  media?: unknown;
}
interface Entity {
  type?: Coding;
  role?: Coding;
  what?: Reference;
  query?: string;
}
export interface AuditEventLike {
  meta?: { profile?: string[] };
  modifierExtension?: unknown;
  type?: Coding;
  subtype?: Coding[];
  action?: string;
  recorded?: string;
  outcome?: string;
  agent?: Agent[];
  source?: { observer?: Reference };
  entity?: Entity[];
}

const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const SCT = 'http://snomed.info/sct';
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
const PARTICIPATION = 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType';
const INTERACTION = 'http://hl7.org/fhir/restful-interaction';
const REST: Coding = { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' };
const DISCLOSE: Coding = { system: 'http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle', code: 'disclose' };
const XREQUEST_ID: Coding = {
  system: 'https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType',
  code: 'XrequestId',
};

const same = (a: Coding | undefined, b: Coding) => a?.system === b.system && a?.code === b.code;
const hasCoding = (c: Concept | undefined, b: Coding) => (c?.coding ?? []).some((x) => same(x, b));
const oneOf = (a: Coding | undefined, system: string, codes: string[]) =>
  a?.system === system && codes.includes(a.code ?? '');
const deepEqual = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
const isPatientReference = (r: Reference | undefined) =>
  r !== undefined &&
  (r.type === 'Patient' || /^Patient\//.test(r.reference ?? '')) &&
  (r.reference !== undefined || r.identifier?.value !== undefined);

/** One agent slice: its pattern (agent.type) and cardinality, and what each agent in it must hold. */
interface AgentSlice {
  name: string;
  type: (t: Concept | undefined) => boolean;
  min: number;
  max: number;
  who?: boolean;
  network?: 'required' | 'forbidden';
  requestor?: boolean;
  observer?: boolean;
  noMedia?: boolean;
}

interface EntitySlice {
  name: string;
  type: Coding;
  min: number;
  max: number;
  role?: (r: Coding | undefined) => boolean;
  what?: 'required' | 'patient' | 'forbidden';
  query?: boolean;
}

interface ProfileRules {
  type: Coding;
  action: string;
  subtype: (s: Coding[]) => boolean;
  outcome?: string;
  agentsMin: number;
  agents: AgentSlice[];
  entitiesMin: number;
  entities: EntitySlice[];
}

const role = (code: string): Coding => ({ system: DCM, code });
const restAgents = (
  client: (t: Concept | undefined) => boolean,
  server: (t: Concept | undefined) => boolean,
  user: string[],
) => [
  { name: 'client', type: client, min: 1, max: 1, who: true, network: 'required' as const, noMedia: true },
  { name: 'server', type: server, min: 1, max: 1, who: true, network: 'required' as const, noMedia: true },
  {
    name: 'user',
    type: (t: Concept | undefined) => (t?.coding ?? []).some((c) => oneOf(c, PARTICIPATION, user)),
    min: 0,
    max: 1,
    who: true,
    requestor: true,
    network: 'forbidden' as const,
    noMedia: true,
  },
];
const dataSlice: EntitySlice = {
  name: 'data',
  type: { system: ENTITY_TYPE, code: '2' },
  min: 1,
  max: 1,
  role: (r) => oneOf(r, OBJECT_ROLE, ['3', '4', '20']),
  what: 'required',
};
const transactionSlice: EntitySlice = { name: 'transaction', type: XREQUEST_ID, min: 0, max: 1 };
const patientSlice: EntitySlice = {
  name: 'patient',
  type: { system: ENTITY_TYPE, code: '1' },
  min: 1,
  max: 1,
  role: (r) => same(r, { system: OBJECT_ROLE, code: '1' }),
  what: 'patient',
};

const rest = (interactions: string[], action: string, agents: AgentSlice[]): ProfileRules => ({
  type: REST,
  action,
  subtype: (s) => s.some((c) => oneOf(c, INTERACTION, interactions)),
  outcome: '0',
  agentsMin: 2,
  agents,
  entitiesMin: 1,
  entities: [transactionSlice, dataSlice],
});

const withPatient = (p: ProfileRules): ProfileRules => ({
  ...p,
  entitiesMin: 2,
  entities: [...p.entities, patientSlice],
});

const is = (c: Coding) => (t: Concept | undefined) => hasCoding(t, c);
const DATA_SOURCES = ['AUT', 'INF', 'CST'];

const create = rest(['create'], 'C', restAgents(is(role('110153')), is(role('110152')), DATA_SOURCES));
const read = rest(['read', 'vread'], 'R', restAgents(is(role('110152')), is(role('110153')), ['IRCP']));
const update = rest(['update', 'patch'], 'U', restAgents(is(role('110153')), is(role('110152')), DATA_SOURCES));
const del = rest(
  ['delete'],
  'D',
  restAgents(
    is(role('110150')),
    is({ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'custodian' }),
    DATA_SOURCES,
  ),
);

const disclosure = (type: string, action: string, observerSlice: 'source' | 'recipient'): ProfileRules => ({
  type: role(type),
  action,
  subtype: (s) => s.some((c) => same(c, DISCLOSE)),
  agentsMin: 2,
  agents: [
    {
      name: 'source',
      type: is(role('110153')),
      min: 1,
      max: 1,
      who: true,
      network: 'required',
      observer: observerSlice === 'source',
    },
    {
      name: 'recipient',
      type: is(role('110152')),
      min: 1,
      max: 1,
      who: true,
      network: 'required',
      observer: observerSlice === 'recipient',
    },
    { name: 'custodian', type: is({ system: SCT, code: '159541003' }), min: 0, max: 1, who: true },
    { name: 'authorizer', type: is({ system: SCT, code: '429577009' }), min: 0, max: 1, who: true },
  ],
  entitiesMin: 2,
  entities: [patientSlice],
});

export const PROFILE_RULES: Record<string, ProfileRules> = {
  'IHE.BasicAudit.Create': create,
  'IHE.BasicAudit.PatientCreate': withPatient(create),
  'IHE.BasicAudit.Read': read,
  'IHE.BasicAudit.PatientRead': withPatient(read),
  'IHE.BasicAudit.Update': update,
  'IHE.BasicAudit.PatientUpdate': withPatient(update),
  'IHE.BasicAudit.Delete': del,
  'IHE.BasicAudit.PatientDelete': withPatient(del),
  'IHE.BasicAudit.PrivacyDisclosure.Source': disclosure('110106', 'R', 'source'),
  'IHE.BasicAudit.PrivacyDisclosure.Recipient': disclosure('110107', 'C', 'recipient'),
};

/**
 * The ways an AuditEvent fails the BALP profiles it claims in meta.profile,
 * one line each; empty when it holds every required element of each. A
 * claim of a profile this helper does not know (or of the non-existent
 * IHE.BasicAudit.Minimal) is itself an error.
 */
export function balpErrors(ae: AuditEventLike): string[] {
  const errors: string[] = [];
  for (const url of ae.meta?.profile ?? []) {
    const name = url.startsWith(BALP) ? url.slice(BALP.length) : url;
    const rules = PROFILE_RULES[name];
    if (!rules) {
      errors.push(`${name}: not a BALP profile this gateway may claim`);
      continue;
    }
    const err = (what: string) => errors.push(`${name}: ${what}`);
    if (!same(ae.type, rules.type)) err(`type must be ${rules.type.system}|${rules.type.code}`);
    if (ae.action !== rules.action) err(`action must be ${rules.action}`);
    if (!rules.subtype(ae.subtype ?? [])) err('subtype lacks the code the profile requires');
    if (!ae.recorded) err('recorded is required');
    if (ae.outcome === undefined) err('outcome is required');
    if (rules.outcome !== undefined && ae.outcome !== rules.outcome) err(`outcome must be ${rules.outcome}`);
    if (ae.modifierExtension !== undefined && name.includes('PrivacyDisclosure'))
      err('modifierExtension is not allowed');
    const agents = ae.agent ?? [];
    if (agents.length < rules.agentsMin) err(`at least ${rules.agentsMin} agents`);
    for (const s of rules.agents) {
      const inSlice = agents.filter((a) => s.type(a.type));
      if (inSlice.length < s.min || inSlice.length > s.max)
        err(`agent[${s.name}]: ${s.min}..${s.max}, found ${inSlice.length}`);
      for (const a of inSlice) {
        if (s.who && !a.who) err(`agent[${s.name}].who is required`);
        if (s.network === 'required' && !a.network?.address) err(`agent[${s.name}].network is required`);
        if (s.network === 'forbidden' && a.network !== undefined) err(`agent[${s.name}].network is not allowed`);
        if (s.requestor !== undefined && a.requestor !== s.requestor)
          err(`agent[${s.name}].requestor must be ${s.requestor}`);
        if (s.noMedia && a.media !== undefined) err(`agent[${s.name}].media is not allowed`);
        if (s.observer && !deepEqual(a.who, ae.source?.observer))
          err(`agent[${s.name}].who must be source.observer (val-audit-source)`);
      }
    }
    const entities = ae.entity ?? [];
    if (entities.length < rules.entitiesMin) err(`at least ${rules.entitiesMin} entities`);
    for (const s of rules.entities) {
      const inSlice = entities.filter((x) => same(x.type, s.type));
      if (inSlice.length < s.min || inSlice.length > s.max)
        err(`entity[${s.name}]: ${s.min}..${s.max}, found ${inSlice.length}`);
      for (const x of inSlice) {
        if (s.role && !s.role(x.role)) err(`entity[${s.name}].role is not one the profile allows`);
        if (s.what === 'required' && !x.what) err(`entity[${s.name}].what is required`);
        if (s.what === 'patient' && !isPatientReference(x.what))
          err(`entity[${s.name}].what must be a Patient reference`);
        if (s.name === 'transaction' && !x.what?.identifier?.value)
          err('entity[transaction].what.identifier.value is required');
      }
    }
  }
  return errors;
}

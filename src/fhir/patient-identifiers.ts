/**
 * Patient identifiers as the blinding sees them: taken from a Bundle, or from
 * a `system|value` token a compliance officer types, and normalised the same
 * way in both cases, so the same identifier always gives the same blind.
 */
export interface PatientIdentifier {
  /** The identifier's namespace (Identifier.system); '' when the resource gives none. */
  system: string;
  value: string;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const array = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** The elements that name the patient a resource is about (subject in most resources, patient in the others). */
const SUBJECT_ELEMENTS = ['subject', 'patient'] as const;

function identifierOf(v: unknown): PatientIdentifier | undefined {
  if (!isObject(v) || typeof v.value !== 'string') return undefined;
  const id = normalise({ system: typeof v.system === 'string' ? v.system : '', value: v.value });
  return id.value === '' ? undefined : id;
}

/**
 * Every patient identifier a Bundle carries: the identifiers of each Patient
 * resource (entries, contained resources and nested Bundles alike), and the
 * logical references of subjects (`subject.identifier`, `patient.identifier`)
 * that name a patient by identifier instead of by a Patient entry. Each once,
 * in the order first met. A subject referenced by URL adds nothing: its
 * Patient entry already gave its identifiers.
 */
export function patientIdentifiers(bundle: unknown): PatientIdentifier[] {
  const found = new Map<string, PatientIdentifier>();
  const add = (v: unknown) => {
    const id = identifierOf(v);
    if (id) found.set(normalisedIdentifier(id), id);
  };
  const visit = (resource: unknown): void => {
    if (!isObject(resource)) return;
    if (resource.resourceType === 'Patient') for (const i of array(resource.identifier)) add(i);
    for (const element of SUBJECT_ELEMENTS) {
      const ref = resource[element];
      if (isObject(ref)) add(ref.identifier);
    }
    for (const c of array(resource.contained)) visit(c);
    if (resource.resourceType === 'Bundle') for (const e of array(resource.entry)) if (isObject(e)) visit(e.resource);
  };
  visit(bundle);
  return [...found.values()];
}

const nfcTrim = (s: string) => s.normalize('NFC').trim();

export function normalise(id: PatientIdentifier): PatientIdentifier {
  return { system: nfcTrim(id.system), value: nfcTrim(id.value) };
}

/**
 * The text that is blinded: `system|value`, both trimmed and in Unicode NFC,
 * with `\` and `|` inside the system escaped by a backslash (FHIR search
 * escaping), so the first bare `|` always ends the system and two different
 * identifiers never give the same text. Case is kept: FHIR identifier values
 * are case-sensitive.
 */
export function normalisedIdentifier(id: PatientIdentifier): string {
  const n = normalise(id);
  return `${n.system.replace(/[\\|]/g, (c) => `\\${c}`)}|${n.value}`;
}

/** Why a typed identifier cannot be blinded, or undefined when it can. */
export type IdentifierProblem = 'no-system-separator' | 'empty-value';

/**
 * One FHIR token `system|value` (a bare `|` splits; `\|`, `\,`, `\$` and `\\`
 * are escapes). `|value` names an identifier without a system. A value alone
 * is refused: FHIR reads it as "any system", and a blind can only be matched
 * for one system at a time.
 */
export function parseIdentifierToken(token: string): PatientIdentifier | IdentifierProblem {
  let system: string | undefined;
  let current = '';
  for (let i = 0; i < token.length; i++) {
    const c = token[i];
    if (c === '\\' && i + 1 < token.length) current += token[++i];
    else if (c === '|' && system === undefined) {
      system = current;
      current = '';
    } else current += c;
  }
  if (system === undefined) return 'no-system-separator';
  const id = normalise({ system, value: current });
  return id.value === '' ? 'empty-value' : id;
}

/** A search parameter value's alternatives: split at each comma not escaped as `\,`. */
export function splitTokens(value: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '\\') i++;
    else if (value[i] === ',') {
      out.push(value.slice(start, i));
      start = i + 1;
    }
  }
  out.push(value.slice(start));
  return out;
}

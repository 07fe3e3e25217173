import {
  capitalize,
  fhirTypeToJsType,
  getAllDataTypes,
  getDataType,
  indexStructureDefinitionBundle,
  isPrimitiveType,
  parseFhirPath,
  validationRegexes,
  type InternalSchemaElement,
  type InternalTypeSchema,
} from '@medplum/core';
import { bundleResources, definitionsFile } from './bundle-file.ts';

type Json = Record<string, unknown>;
type StructureDefinitions = Parameters<typeof indexStructureDefinitionBundle>[0];
type FhirPathAtom = ReturnType<typeof parseFhirPath>;

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

/** The invariants @medplum/core itself leaves out (ele-1 needs hasValue(); dom-3 needs descendants()). */
export const SKIPPED_INVARIANTS = new Set(['ele-1', 'dom-3', 'org-1', 'sdf-19']);

/** An error-level invariant of the definitions, its FHIRPath parsed once per process. */
export interface Invariant {
  key: string;
  description: string;
  expression: string;
  atom?: FhirPathAtom;
  /** The expression does not parse: evaluating it fails every time, as it did the first. */
  unparsable?: Error;
}

/** One way an element is written in JSON: `name`, or `valueQuantity` for one type of `value[x]`. */
export interface Variant {
  name: string;
  /** `_name`: the primitive's id and extensions. */
  extName: string;
  type: string;
  primitive: boolean;
  /** The JSON type of a primitive (fhirTypeToJsType), and the form it must have (validationRegexes). */
  jsType?: 'string' | 'number' | 'boolean';
  form?: RegExp;
}

/** An element of a type, with what the walk needs of it computed once. */
export interface Slot {
  /** The key in the definitions (`value[x]`) and the FHIRPath step that names it (`value`). */
  key: string;
  step: string;
  /** Position in the definitions: the walk checks elements in this order, as validateResource does. */
  index: number;
  element: InternalSchemaElement;
  /** In the definitions' type order: a choice takes the first type present. */
  variants: Variant[];
  /** The element's own error-level invariants (ele-1 and the other skipped ones left out). */
  invariants: Invariant[];
  /** Every invariant key the element states: a type invariant it repeats is checked once, as the element's. */
  stated: Set<string>;
  /** A slot for a resource (Bundle.entry.resource, contained). */
  resourceSlot: boolean;
  /** The value set a `code` must be in, when the binding is required. */
  requiredValueSet?: string;
  /** Resource.id: typed System.String in the definitions, it keeps the R4 id rule all the same. */
  resourceId: boolean;
}

/** What the walk reads of one type, built once per type. */
export interface TypeTable {
  type: string;
  isResource: boolean;
  slots: Slot[];
  /** Every JSON name of every element (`name`, `_name`, `valueString`, `_valueString`) and its slot. */
  byName: Map<string, { slot: Slot; variant: Variant }>;
  required: Slot[];
  /** The type's own error-level invariants (its root element's), the skipped ones left out. */
  invariants: Invariant[];
}

function invariantsOf(constraints: InternalSchemaElement['constraints']): Invariant[] {
  return (constraints ?? [])
    .filter((c) => c.severity === 'error' && !SKIPPED_INVARIANTS.has(c.key))
    .map((c) => ({ key: c.key, description: c.description, expression: c.expression }));
}

/** The parsed FHIRPath of an invariant; throws, every time, when it does not parse. */
export function compiled(inv: Invariant): FhirPathAtom {
  if (!inv.atom && !inv.unparsable) {
    try {
      inv.atom = parseFhirPath(inv.expression);
    } catch (err) {
      inv.unparsable = err as Error;
    }
  }
  if (inv.unparsable) throw inv.unparsable;
  return inv.atom as FhirPathAtom;
}

function slotOf(key: string, index: number, element: InternalSchemaElement, ofResource: boolean): Slot {
  // The JSON name of each type as @medplum/core reads it: the element's last path segment, [x] replaced.
  const last = element.path.slice(element.path.lastIndexOf('.') + 1);
  const variants = element.type.map((t): Variant => {
    const name = last.replace('[x]', capitalize(t.code));
    const primitive = isPrimitiveType(t.code);
    const jsType = fhirTypeToJsType[t.code as keyof typeof fhirTypeToJsType];
    return { name, extName: `_${name}`, type: t.code, primitive, jsType, form: validationRegexes[t.code] };
  });
  const binding = element.binding;
  return {
    key,
    step: key.replace('[x]', ''),
    index,
    element,
    variants,
    invariants: invariantsOf(element.constraints),
    stated: new Set((element.constraints ?? []).map((c) => c.key)),
    resourceSlot: element.type.some((t) => t.code === 'Resource'),
    resourceId: ofResource && key === 'id',
    ...(binding?.strength === 'required' && binding.valueSet ? { requiredValueSet: binding.valueSet } : {}),
  };
}

function tableOf(type: string, schema: InternalTypeSchema): TypeTable {
  const isResource = schema.kind === 'resource';
  const slots = Object.entries(schema.elements).map(([key, element], i) => slotOf(key, i, element, isResource));
  const byName = new Map<string, { slot: Slot; variant: Variant }>();
  for (const slot of slots)
    for (const variant of slot.variants) {
      // A name two elements could claim keeps the first, as @medplum/core's lookup does.
      if (!byName.has(variant.name)) byName.set(variant.name, { slot, variant });
      if (!byName.has(variant.extName)) byName.set(variant.extName, { slot, variant });
    }
  return {
    type,
    isResource,
    slots,
    byName,
    required: slots.filter((s) => s.element.min > 0),
    invariants: invariantsOf(schema.constraints),
  };
}

const tables = new Map<string, TypeTable>();

/** The walk's table for a type of the R4 definitions (built on first use; all of them at warm-up). */
export function typeTable(type: string): TypeTable {
  let table = tables.get(type);
  if (!table) {
    table = tableOf(type, getDataType(type));
    tables.set(type, table);
  }
  return table;
}

let valueSets: Map<string, Json> | undefined;
let codeSystems: Map<string, Json> | undefined;
const expansions = new Map<string, Set<string> | null>();

/** A concept as expansion reads it: its code and the concepts under it. */
const codesOnly = (concepts: Concept[] | undefined): Concept[] | undefined =>
  concepts?.map((c) => ({ code: c.code, concept: codesOnly(c.concept) }));

function indexTerminology(file: string): void {
  const sets = (valueSets ??= new Map());
  const systems = (codeSystems ??= new Map());
  for (const r of bundleResources(definitionsFile(file))) {
    if (typeof r.url !== 'string') continue;
    if (r.resourceType === 'ValueSet') sets.set(r.url, { url: r.url, compose: r.compose });
    else if (r.resourceType === 'CodeSystem')
      systems.set(r.url, { url: r.url, content: r.content, concept: codesOnly(r.concept as Concept[] | undefined) });
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
  // Released once every required binding was expanded: a value set asked for later was never expanded.
  if (!valueSets) throw new Error(`value set ${key} was not expanded while the R4 terminology was loaded`);
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
  ensureR4Definitions();
  return expand(url, 0);
}

/**
 * Loading the definitions, as small steps: the StructureDefinitions indexed
 * one at a time, the terminology, then every type's table and every
 * required code binding expanded. Steps add the steps they imply.
 */
const steps: Array<() => void> = [
  () => indexEach('fhir/r4/profiles-types.json'),
  () => indexEach('fhir/r4/profiles-resources.json'),
  () => indexTerminology('fhir/r4/valuesets.json'),
  () => indexTerminology('fhir/r4/v3-codesystems.json'),
  () => {
    for (const [type, schema] of Object.entries(getAllDataTypes())) {
      if (!schema.elements) continue;
      steps.push(() => {
        for (const slot of typeTable(type).slots) if (slot.requiredValueSet) expand(slot.requiredValueSet, 0);
      });
    }
    // Every required binding of every type is expanded by now: the whole terminology need not stay in memory.
    steps.push(() => {
      valueSets = undefined;
      codeSystems = undefined;
    });
  },
];
let done = 0;

/** What validation never reads of a StructureDefinition and its elements: narrative, prose, mappings, the differential. */
const PROSE = new Set([
  'text',
  'description',
  'purpose',
  'differential',
  'mapping',
  'contact',
  'copyright',
  'jurisdiction',
]);
const ELEMENT_PROSE = new Set(['definition', 'comment', 'requirements', 'short', 'alias', 'mapping', 'example']);

/** A copy without the `dropped` members (deleting them instead would leave a slower, larger object). */
const without = (o: Json, dropped: Set<string>): Json =>
  Object.fromEntries(Object.entries(o).filter(([k]) => !dropped.has(k)));

function trimmed(sd: Json): Json | undefined {
  if (sd.resourceType !== 'StructureDefinition') return undefined;
  const snapshot = sd.snapshot as { element?: Json[] } | undefined;
  return {
    ...without(sd, PROSE),
    ...(snapshot
      ? { snapshot: { ...snapshot, element: snapshot.element?.map((e) => without(e, ELEMENT_PROSE)) } }
      : {}),
  };
}

/** Index a file's StructureDefinitions 40 at a time, each batch a step of its own, parsed as it is indexed. */
function indexEach(file: string): void {
  let resources: Generator<Json, void> | undefined = bundleResources(definitionsFile(file));
  // Kept until indexed: a batch whose indexing failed is indexed again when its step runs again.
  let chunk: Json[] | undefined;
  // A read that failed ended the file's reader: every later run fails the same way, so the definitions
  // never count as loaded with part of a file missing.
  let unreadable: unknown;
  const batch = (): void => {
    if (unreadable !== undefined) throw unreadable;
    if (!chunk) {
      const read: Json[] = [];
      try {
        for (let next = resources?.next(); next && !next.done; next = resources?.next()) {
          const sd = trimmed(next.value);
          if (sd) read.push(sd);
          if (read.length === 40) break;
        }
      } catch (err) {
        unreadable = err;
        throw err;
      }
      chunk = read;
    }
    if (chunk.length === 0) {
      resources = undefined; // the file's bytes go with it
      return;
    }
    indexStructureDefinitionBundle(chunk as StructureDefinitions);
    chunk = undefined;
    // Runs as step `done`: the next batch is the step after it.
    steps.splice(done + 1, 0, batch);
  };
  steps.splice(done + 1, 0, batch);
}

/** One step; counted only once it ran, so a step that failed runs again rather than being skipped. */
function runStep(): void {
  (steps[done] as () => void)();
  done++;
}

/** The R4 definitions, loaded in full before this returns (the rest of a warm-up, if one is under way). */
export function ensureR4Definitions(): void {
  while (done < steps.length) runStep();
}

/** Whether the definitions are loaded: a validation now pays nothing but its own walk. */
export const r4DefinitionsLoaded = (): boolean => done === steps.length;

let warming: Promise<void> | undefined;

/**
 * Load the definitions at process start (about a second of CPU), giving
 * the event loop back every few milliseconds so the rest of start-up
 * (PostgreSQL, the HSM) proceeds meanwhile. Idempotent.
 */
export function warmR4Definitions(): Promise<void> {
  warming ??= (async () => {
    while (done < steps.length) {
      const until = performance.now() + 15;
      while (done < steps.length && performance.now() < until) runStep();
      await new Promise((resolve) => setImmediate(resolve));
    }
  })().catch((err: unknown) => {
    warming = undefined; // a later call tries again from the step that failed
    throw err;
  });
  return warming;
}

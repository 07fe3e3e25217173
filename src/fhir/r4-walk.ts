import { evalFhirPathTyped, toTypedValue, UCUM, validationRegexes, type TypedValue } from '@medplum/core';
import type { Issue, IssueType } from '../errors.ts';
import { isCalendarDay } from './dates.ts';
import {
  compiled,
  typeTable,
  valueSetCodes,
  type Invariant,
  type Slot,
  type TypeTable,
  type Variant,
} from './r4-definitions.ts';

type Json = Record<string, unknown>;

/** %resource and %rootResource where a value is checked (a contained resource's root is its container's). */
interface Scope {
  resource: TypedValue;
  root: TypedValue;
}

const UCUM_SYSTEM = toTypedValue(UCUM);
const RESOURCE_ID = validationRegexes.id as RegExp;
/** FHIR strings have a maximum length of 1 MB (R4 datatypes). */
const MAX_STRING = 1024 * 1024;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function isEmptyObject(o: object): boolean {
  for (const _ in o) return false;
  return true;
}

/** Absent as @medplum/core reads JSON: undefined, null, "", [] and {} carry no value. */
const isAbsent = (v: unknown): boolean =>
  v === undefined ||
  v === null ||
  v === '' ||
  (typeof v === 'object' && (Array.isArray(v) ? !v.length : isEmptyObject(v)));

/** A primitive with its `_name` object, as FHIRPath sees it: the value carrying the id and extensions. */
function primitiveWithExtension(raw: unknown, ext: unknown): unknown {
  if (!isObject(ext)) return raw;
  return Object.assign(raw === undefined || raw === null ? {} : Object(raw), ext);
}

/**
 * The one typed walk of R4 validation: every element of a resource and of
 * everything in it, against the R4 definitions as @medplum/core indexes them,
 * with its FHIRPath engine for the invariants. It checks, element by element
 * in the definitions' order, what validateResource checks (required elements,
 * JSON types, primitive forms, unknown elements, element invariants, the
 * root's invariants) and what it lacks (array or single value, cardinality,
 * required code bindings, calendar dates, Resource.id, and the invariants of
 * data types and of every resource below the root).
 */
export class R4Walk {
  /** The root resource's own invariants, reported first as validateResource does. */
  readonly rootIssues: Issue[] = [];
  readonly issues: Issue[] = [];
  #scope: Scope;
  readonly #root: Json;
  readonly #type: string;

  constructor(root: Json, type: string) {
    this.#root = root;
    this.#type = type;
    const typed = { type, value: root };
    this.#scope = { resource: typed, root: typed };
  }

  run(): void {
    const table = typeTable(this.#type);
    this.#elementInvariants(table.invariants, this.#scope.resource, this.#type, this.rootIssues);
    this.#object(this.#root, table, this.#type);
  }

  #add(type: IssueType, at: string, diagnostics: string, out: Issue[] = this.issues): void {
    out.push({ type, diagnostics, expression: [at] });
  }

  #object(obj: Json, table: TypeTable, path: string): void {
    const present: Slot[] = [];
    const chosen: Variant[] = [];
    let unknown: string[] | undefined;
    for (const key in obj) {
      if (key === 'resourceType' && table.isResource) continue;
      const known = table.byName.get(key);
      if (!known) (unknown ??= []).push(key);
      else {
        const i = present.indexOf(known.slot);
        if (i < 0) {
          present.push(known.slot);
          chosen.push(known.variant);
        } else if (chosen[i] !== known.variant)
          this.#add('structure', `${path}.${key}`, `${path}.${key}: ${known.slot.step}[x] takes one type only`);
      }
    }
    for (const slot of table.required) if (!present.includes(slot)) present.push(slot);
    const order = present.map((_, i) => i);
    if (order.length > 1) order.sort((a, b) => (present[a] as Slot).index - (present[b] as Slot).index);
    for (const i of order) this.#property(obj, present[i] as Slot, chosen[i], path);
    for (const key of unknown ?? [])
      this.#add('structure', `${path}.${key}`, `${path}.${key}: Invalid additional property "${key}"`);
  }

  /** One element of an object: `variant` is the type its JSON names (none when it is absent). */
  #property(obj: Json, slot: Slot, variant: Variant | undefined, path: string): void {
    let ext = variant && obj[variant.extName];
    const raw = variant && obj[variant.name];
    const at = `${path}.${slot.step}`;
    if (!variant || (isAbsent(raw) && isAbsent(ext))) {
      if (slot.element.min > 0) this.#add('required', at, `${at}: Missing required property`);
      if (variant && Array.isArray(raw) && !slot.element.isArray) {
        const e = `${path}.${variant.name}`;
        this.#add('structure', e, `${e} is an empty array where R4 has a single value`);
      }
      return;
    }
    if (ext !== undefined && ext !== null && !variant.primitive) {
      const e = `${path}.${variant.extName}`;
      this.#add('structure', e, `${e}: only a primitive element has a ${variant.extName} (its id and extensions)`);
      ext = undefined;
    }
    const isArray = Array.isArray(raw) || (raw === undefined && Array.isArray(ext));
    if (ext !== undefined && ext !== null && Array.isArray(ext) !== isArray) {
      const e = `${path}.${variant.extName}`;
      this.#add('structure', e, `${e} must be ${isArray ? 'an array' : 'an object'}, as ${variant.name} is`);
      ext = undefined;
    }
    const raws = isArray ? (Array.isArray(raw) ? raw : []) : [raw];
    const exts = isArray ? (Array.isArray(ext) ? ext : []) : [ext];
    const n = Math.max(raws.length, exts.length);
    const element = slot.element;
    const shapeFits = isArray === Boolean(element.isArray);
    if (!shapeFits) this.#add('structure', at, `${at} must be ${element.isArray ? 'an array' : 'a single value'}`);
    else if (n > element.max || n < element.min) {
      const max = Number.isFinite(element.max) ? element.max : '*';
      this.#add('structure', at, `${at} has ${n} values; R4 allows ${element.min}..${max}`);
    }
    const typeOf = (item: unknown) =>
      variant.type === 'Resource' && isObject(item) && typeof item.resourceType === 'string'
        ? item.resourceType
        : variant.type;
    // Every value's own checks first, then the walk into each (validateResource's order).
    if (shapeFits)
      for (let i = 0; i < n; i++) {
        const itemAt = isArray ? `${at}[${i}]` : at;
        if (variant.primitive) this.#primitive(raws[i], exts[i], variant, slot, itemAt);
        else this.#complex(raws[i], typeOf(raws[i]), slot, itemAt);
      }
    if (variant.primitive) return;
    for (let i = 0; i < n; i++) {
      const item = raws[i];
      if (!isObject(item)) continue;
      const type = typeOf(item);
      const table = typeTable(type);
      if (typeof item.resourceType !== 'string') {
        this.#object(item, table, isArray ? `${at}[${i}]` : at);
        continue;
      }
      const outer = this.#scope;
      this.#scope = this.#scopeOf(item, type, slot);
      this.#object(item, table, isArray ? `${at}[${i}]` : at);
      this.#scope = outer;
    }
  }

  /** A resource is its own %resource; a contained one has its container's %rootResource. */
  #scopeOf(item: Json, type: string, slot: Slot): Scope {
    const typed = { type, value: item };
    return { resource: typed, root: slot.key === 'contained' ? this.#scope.root : typed };
  }

  #primitive(raw: unknown, ext: unknown, variant: Variant, slot: Slot, at: string): void {
    if (slot.invariants.length) {
      const typed = { type: variant.type, value: primitiveWithExtension(raw, ext) };
      this.#elementInvariants(slot.invariants, typed, at, this.issues);
    }
    if (raw !== undefined && raw !== null) {
      if (typeof raw !== variant.jsType)
        this.#add(
          'structure',
          at,
          `${at}: Invalid JSON type: expected ${variant.jsType}, but got ${Array.isArray(raw) ? 'array' : typeof raw}`,
        );
      else if (typeof raw === 'string') this.#string(raw, variant, at);
      else if (typeof raw === 'number') this.#number(raw, variant.type, at);
    } else if (ext === undefined || ext === null)
      this.#add('structure', at, `${at}: a value or its ${variant.extName} is required`);
    if (ext !== undefined && ext !== null) {
      if (isObject(ext)) this.#object(ext, typeTable('Element'), at);
      else this.#add('structure', at, `${at}: its ${variant.extName} must be an object (its id and extensions)`);
    }
    if (typeof raw !== 'string') return;
    // Resource.id is typed System.String in the definitions, so its R4 id rule is checked here.
    if (slot.resourceId && raw && !RESOURCE_ID.test(raw))
      this.#add('value', at, `${at} is not an R4 id (1 to 64 of A-Z a-z 0-9 - .)`);
    if (raw === '') this.#add('value', at, `${at} is an empty string (R4 JSON has no empty values)`);
    else if ((variant.type === 'date' || variant.type === 'dateTime' || variant.type === 'instant') && !isRealDay(raw))
      this.#add('value', at, `${at} is not a day of the calendar`);
    else if (variant.type === 'code' && slot.requiredValueSet) {
      const codes = valueSetCodes(slot.requiredValueSet);
      if (codes && !codes.has(raw))
        this.#add('code-invalid', at, `${at} is not a code of the required value set ${slot.requiredValueSet}`);
    }
  }

  #string(text: string, variant: Variant, at: string): void {
    if (!text.trim()) this.#add('value', at, `${at}: String must contain non-whitespace content`);
    else if (text.length > MAX_STRING) this.#add('value', at, `${at}: String cannot be larger than 1 MB`);
    else if (variant.form && !variant.form.test(text)) this.#add('value', at, `${at}: Invalid ${variant.type} format`);
  }

  #number(n: number, type: string, at: string): void {
    const integer = type === 'integer' || type === 'positiveInt' || type === 'unsignedInt';
    if (!Number.isFinite(n)) this.#add('value', at, `${at}: Invalid numeric value`);
    else if (integer && !Number.isInteger(n)) this.#add('value', at, `${at}: Expected number to be an integer`);
    else if (type === 'positiveInt' && n <= 0) this.#add('value', at, `${at}: Expected number to be positive`);
    else if (type === 'unsignedInt' && n < 0) this.#add('value', at, `${at}: Expected number to be non-negative`);
  }

  #complex(raw: unknown, type: string, slot: Slot, at: string): void {
    const typed = { type, value: raw };
    if (slot.invariants.length) this.#elementInvariants(slot.invariants, typed, at, this.issues);
    if (raw === null || raw === undefined || (isObject(raw) && isEmptyObject(raw))) {
      this.#add('structure', at, `${at}: Invalid empty non-primitive value`);
      return;
    }
    if (!isObject(raw)) {
      this.#add('structure', at, `${at} must be a JSON object (a ${type})`);
      return;
    }
    if (slot.resourceSlot && typeof raw.resourceType !== 'string') {
      this.#add('structure', `${at}.resourceType`, `${at} must be a resource with a resourceType`);
      return;
    }
    const table = typeTable(type);
    if (!table.invariants.length) return;
    const scope = typeof raw.resourceType === 'string' ? this.#scopeOf(raw, type, slot) : this.#scope;
    const vars = this.#variables(typed, scope);
    for (const inv of table.invariants) {
      if (slot.stated.has(inv.key)) continue;
      let result: TypedValue[];
      try {
        result = evalFhirPathTyped(compiled(inv), [typed], vars);
      } catch {
        continue; // an expression this FHIRPath engine cannot evaluate refuses nothing
      }
      // Only a definite false refuses: an empty result (ref-1 on a display-only Reference) is no violation.
      if (result.length === 1 && result[0]?.value === false)
        this.#add('invariant', at, `${at}: constraint ${inv.key} not met: ${inv.description}`);
    }
  }

  #variables(typed: TypedValue, scope: Scope): Record<string, TypedValue> {
    return { '%context': typed, '%ucum': UCUM_SYSTEM, '%resource': scope.resource, '%rootResource': scope.root };
  }

  /**
   * An element's invariants (and the root's), as validateResource checks
   * them: anything but true fails, and only the first failure is reported.
   */
  #elementInvariants(list: Invariant[], typed: TypedValue, at: string, out: Issue[]): void {
    const vars = this.#variables(typed, this.#scope);
    for (const inv of list) {
      let holds = false;
      try {
        const result = evalFhirPathTyped(compiled(inv), [typed], vars);
        holds = result.length === 1 && result[0]?.value === true;
      } catch {
        this.#add('invariant', at, `${at}: Error evaluating invariant expression`, out);
      }
      if (!holds) {
        this.#add('invariant', at, `${at}: Constraint ${inv.key} not met: ${inv.description}`, out);
        return;
      }
    }
  }
}

/** The YYYY-MM-DD of a date, dateTime or instant (already in R4 form) names a day that exists. */
function isRealDay(text: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(text);
  return !m || isCalendarDay(Number(m[1]), Number(m[2]), Number(m[3]));
}

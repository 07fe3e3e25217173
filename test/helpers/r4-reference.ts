import {
  arrayify,
  crawlTypedValue,
  evalFhirPathTyped,
  getDataType,
  isPrimitiveType,
  isResourceType,
  LRUCache,
  OperationOutcomeError,
  toTypedValue,
  validateResource,
  type Constraint,
  type CrawlerVisitor,
  type InternalSchemaElement,
  type InternalTypeSchema,
  type TypedValue,
} from '@medplum/core';
import type { OperationOutcomeIssue } from 'fhir/r4.js';
import type { Issue, IssueType } from '../../src/errors.ts';
import { isCalendarDay } from '../../src/fhir/dates.ts';
import { ensureR4Definitions, SKIPPED_INVARIANTS, valueSetCodes } from '../../src/fhir/r4-definitions.ts';

/**
 * The reference the one-walk validator (src/fhir/r4-walk.ts) is held to:
 * R4 validation as intake made it before, @medplum/core's validateResource
 * (its own typed walk) followed by a second typed walk for the checks it
 * lacks. Only the differential test uses it; it is slower, not truer.
 */
type Atom = Parameters<typeof evalFhirPathTyped>[0];
type Value = TypedValue & { path: string };

const RESOURCE_ID = /^[A-Za-z0-9\-.]{1,64}$/;
const fhirPathCache = new LRUCache<Exclude<Atom, string>>(1_000);

/** A FHIRPath without choice markers: Observation.effective[x] is Observation.effective. */
const fhirPath = (path: string) => (path.includes('[x]') ? path.replace(/\[x\]/g, '') : path);

/**
 * The R4 checks @medplum/core's validateResource does not make, run over
 * the same typed tree: required bindings of code elements, calendar dates,
 * empty strings and objects, the invariants of data types and of every
 * resource below the root, and cardinality with indexed paths.
 */
class R4Supplement implements CrawlerVisitor {
  readonly issues: Issue[] = [];
  /** The resources being walked, outermost first; a contained one's %rootResource is its container. */
  readonly #resources: Array<{ value: TypedValue; root: TypedValue }> = [];
  constructor(root: TypedValue) {
    this.#resources.push({ value: root, root });
  }

  onEnterResource(_path: string, obj: Value): void {
    if (this.#resources[0]?.value.value === obj.value) return; // the root, pushed by the constructor
    this.#resources.push(this.#scopeOf(obj));
  }

  /** %resource and %rootResource for a resource: itself, and its container's root when it is contained. */
  #scopeOf(obj: Value): { value: TypedValue; root: TypedValue } {
    const container = this.#resources.at(-1);
    const contained = /\.contained\[\d+\]$/.test(obj.path) && container;
    return { value: obj, root: contained ? container.root : obj };
  }
  onExitResource(_path: string, obj: Value): void {
    if (this.#resources.length > 1 && this.#resources.at(-1)?.value.value === obj.value) this.#resources.pop();
  }

  visitProperty(parent: Value, key: string, _path: string, values: Array<Value | Value[]>, schema: InternalTypeSchema) {
    const element = schema.elements[key];
    // The walk visits every element the type defines: most are absent, and cost nothing more here.
    if (!element || !values.some((v) => v !== undefined && (Array.isArray(v) || v.value !== undefined))) return;
    const at = fhirPath(`${parent.path}.${key}`);
    // Resource.id is typed System.String in the definitions, so its R4 id rule is checked here.
    const id = key === 'id' && (parent.value as { resourceType?: unknown; id?: unknown } | null);
    if (id && typeof id.resourceType === 'string' && typeof id.id === 'string' && id.id && !RESOURCE_ID.test(id.id))
      this.#add('value', `${at} is not an R4 id (1 to 64 of A-Z a-z 0-9 - .)`, at);
    for (const value of values) {
      if (value === undefined || (!Array.isArray(value) && value.value === undefined)) continue;
      if (Array.isArray(value) !== Boolean(element.isArray)) {
        this.#add('structure', `${at} must be ${element.isArray ? 'an array' : 'a single value'}`, at);
        continue;
      }
      const n = Array.isArray(value) ? value.length : 1;
      if (n > element.max || n < element.min) {
        const max = Number.isFinite(element.max) ? element.max : '*';
        this.#add('structure', `${at} has ${n} values; R4 allows ${element.min}..${max}`, at);
      }
      for (const v of arrayify(value) as Value[]) this.#value(v, element);
    }
  }

  #value(v: Value, element: InternalSchemaElement): void {
    const at = fhirPath(v.path);
    if (isPrimitiveType(v.type)) {
      const text =
        typeof v.value === 'string' ? v.value : typeof v.value?.valueOf() === 'string' ? String(v.value) : undefined;
      if (text === undefined) return;
      if (text === '') this.#add('value', `${at} is an empty string (R4 JSON has no empty values)`, at);
      else if ((v.type === 'date' || v.type === 'dateTime' || v.type === 'instant') && !isRealDay(text))
        this.#add('value', `${at} is not a day of the calendar`, at);
      else if (v.type === 'code' && element.binding?.strength === 'required' && element.binding.valueSet) {
        const codes = valueSetCodes(element.binding.valueSet);
        if (codes && !codes.has(text))
          this.#add('code-invalid', `${at} is not a code of the required value set ${element.binding.valueSet}`, at);
      }
      return;
    }
    const isResourceSlot = element.type.some((t) => t.code === 'Resource');
    if (isResourceSlot && typeof (v.value as { resourceType?: unknown } | null)?.resourceType !== 'string') {
      this.#add('structure', `${at} must be a resource with a resourceType`, `${at}.resourceType`);
      return;
    }
    if (typeof v.value === 'object' && v.value !== null && Object.keys(v.value).length === 0) {
      this.#add('structure', `${at} is an empty object (R4 JSON has no empty values)`, at);
      return;
    }
    this.#invariants(v, element, at);
  }

  /** The data type's (or nested resource's) own invariants; the element's are checked by validateResource. */
  #invariants(v: Value, element: InternalSchemaElement, at: string): void {
    const constraints = typeInvariants(v.type);
    if (!constraints.length) return;
    const checked = new Set((element.constraints ?? []).map((c) => c.key));
    for (const c of constraints) {
      if (checked.has(c.key)) continue;
      // A resource's own invariants are checked before the walk enters it: it is its own %resource.
      const isResource = typeof (v.value as { resourceType?: unknown }).resourceType === 'string';
      const resource = isResource ? this.#scopeOf(v) : this.#resources.at(-1);
      const vars: Record<string, TypedValue> = { '%context': v };
      if (resource) Object.assign(vars, { '%resource': resource.value, '%rootResource': resource.root });
      let result: TypedValue[];
      try {
        result = evalFhirPathTyped(c.expression, [v], vars, fhirPathCache);
      } catch {
        continue; // an expression this FHIRPath engine cannot evaluate refuses nothing
      }
      // Only a definite false refuses: an empty result (ref-1 on a display-only Reference) is no violation.
      if (result.length === 1 && result[0]?.value === false)
        this.#add('invariant', `${at}: constraint ${c.key} not met: ${c.description}`, at);
    }
  }

  #add(type: Issue['type'], diagnostics: string, expression: string): void {
    this.issues.push({ type, diagnostics, expression: [expression] });
  }
}

const invariantsByType = new Map<string, Constraint[]>();

/** A type's own error-level invariants, less the skipped ones: listed once per type. */
function typeInvariants(type: string): Constraint[] {
  let list = invariantsByType.get(type);
  if (!list) {
    list = (getDataType(type).constraints ?? []).filter(
      (c) => c.severity === 'error' && !SKIPPED_INVARIANTS.has(c.key),
    );
    invariantsByType.set(type, list);
  }
  return list;
}

/** The YYYY-MM-DD of a date, dateTime or instant (already in R4 form) names a day that exists. */
function isRealDay(text: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(text);
  return !m || isCalendarDay(Number(m[1]), Number(m[2]), Number(m[3]));
}

/** An outcome carries at most this many issues: enough to fix a bundle, bounded for a hostile one. */
const MAX_ISSUES = 50;

// validateResource's cardinality messages name the element without its index; R4Supplement reports them indexed.
const REPORTED_BY_SUPPLEMENT = /^(Expected array of values|Expected single value|Invalid number of values)/;
const VALUE_MESSAGE =
  /^(Invalid \w+ format|String must contain|String cannot be larger|Invalid numeric|Expected number)/;

/** The IssueType an @medplum/core message means: its own code is `structure` for all but invariants. */
function issueType(i: OperationOutcomeIssue, text: string): IssueType {
  if (i.code === 'invariant' || i.code === 'processing') return 'invariant';
  if (text === 'Missing required property') return 'required';
  if (VALUE_MESSAGE.test(text)) return 'value';
  return 'structure';
}

/**
 * What the typed walk cannot see in the JSON: a resourceType R4 does not
 * define (validateResource would stop at the first), empty strings and
 * objects, which R4 JSON never has and the typed walk reads as absent, and
 * a RESTful fullUrl that names another resource than its entry's.
 */
function jsonIssues(node: unknown, path: string, out: Issue[]): void {
  const add = (type: IssueType, diagnostics: string, at: string) =>
    out.push({ type, diagnostics: `${at} ${diagnostics}`, expression: [at] });
  if (node === '') add('value', 'is an empty string (R4 JSON has no empty values)', path);
  else if (Array.isArray(node)) node.forEach((v, i) => jsonIssues(v, `${path}[${i}]`, out));
  else if (typeof node === 'object' && node !== null) {
    const o = node as Record<string, unknown>;
    if (Object.keys(o).length === 0) add('structure', 'is an empty object (R4 JSON has no empty values)', path);
    if ('resourceType' in o && (typeof o.resourceType !== 'string' || !isResourceType(o.resourceType)))
      add('structure', 'is not an R4 resource type', `${path}.resourceType`);
    if (o.resourceType === 'Bundle' && Array.isArray(o.entry))
      o.entry.forEach((e, i) => {
        const bad = fullUrlIdIssue(e, `${path}.entry[${i}]`);
        if (bad) out.push(bad);
      });
    for (const key in o) if (key !== 'resourceType') jsonIssues(o[key], `${path}.${key}`, out);
  }
}

/** The validator failed on a shape it does not expect: a refusal of the input, never a fault of the gateway. */
const unreadable = (root: string): Issue[] => [
  { type: 'structure', diagnostics: `${root} is not a resource the R4 validator can read`, expression: [root] },
];

// R4 Bundle.entry.fullUrl: a fullUrl that looks like a RESTful server URL SHALL end with the resource's type and id.
const RESTFUL_URL = /^https?:\/\/([A-Za-z0-9\-\\.:%$]*\/)+([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/;

function fullUrlIdIssue(entry: unknown, at: string): Issue | undefined {
  const e = entry as { fullUrl?: unknown; resource?: { resourceType?: unknown; id?: unknown } } | null;
  const m = typeof e?.fullUrl === 'string' ? RESTFUL_URL.exec(e.fullUrl) : null;
  if (!m || !isResourceType(m[2] as string) || typeof e?.resource?.id !== 'string') return undefined;
  if (m[2] === e.resource.resourceType && m[3] === e.resource.id) return undefined;
  return {
    type: 'invariant',
    diagnostics: `${at}.fullUrl is a RESTful URL that does not end with its resource's type and id (R4 SHALL)`,
    expression: [`${at}.fullUrl`],
  };
}

/** One issue per element: the first found (several checks may see the same fault). */
function onePerElement(issues: Issue[]): Issue[] {
  const seen = new Set<string>();
  return issues
    .filter((i) => {
      const key = i.expression?.[0] ?? '';
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .slice(0, MAX_ISSUES);
}

/**
 * Every error-level R4 issue of a resource and everything in it, by
 * @medplum/core's validator plus R4Supplement: structure, cardinality,
 * types, required bindings and invariants, each with its IssueType and
 * the FHIRPath of the element. Empty when the resource is valid R4.
 */
export function referenceR4Issues(resource: Record<string, unknown>): Issue[] {
  ensureR4Definitions();
  const root = typeof resource.resourceType === 'string' ? resource.resourceType : 'Resource';
  const issues: Issue[] = [];
  jsonIssues(resource, root, issues);
  if (issues.some((i) => i.expression?.[0]?.endsWith('.resourceType'))) return onePerElement(issues);
  try {
    validateResource(resource as unknown as Parameters<typeof validateResource>[0]);
  } catch (err) {
    if (!(err instanceof OperationOutcomeError)) return unreadable(root);
    for (const i of err.outcome.issue ?? []) {
      const text = i.details?.text ?? i.diagnostics ?? 'invalid';
      if (i.severity !== 'error' || REPORTED_BY_SUPPLEMENT.test(text)) continue;
      const expression = (i.expression ?? [root]).map(fhirPath);
      issues.push({
        type: issueType(i as OperationOutcomeIssue, text),
        diagnostics: `${expression[0]}: ${text}`,
        expression,
      });
    }
  }
  const supplement = new R4Supplement(toTypedValue(resource));
  try {
    crawlTypedValue(toTypedValue(resource), supplement);
  } catch {
    return unreadable(root);
  }
  issues.push(...supplement.issues);
  return onePerElement(issues);
}

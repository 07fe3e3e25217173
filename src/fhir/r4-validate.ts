import { crawlTypedValue, isResourceType, OperationOutcomeError, toTypedValue, validateResource } from '@medplum/core';
import type { OperationOutcomeIssue } from 'fhir/r4.js';
import type { Issue, IssueType } from '../errors.ts';
import { ensureR4Definitions } from './r4-definitions.ts';
import { fhirPath, R4Supplement } from './r4-supplement.ts';

/** An outcome carries at most this many issues: enough to fix a bundle, bounded for a hostile one. */
export const MAX_ISSUES = 50;

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
export function r4Issues(resource: Record<string, unknown>): Issue[] {
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

import { isResourceType } from '@medplum/core';
import type { Issue, IssueType } from '../errors.ts';
import { ensureR4Definitions } from './r4-definitions.ts';
import { R4Walk } from './r4-walk.ts';

/** An outcome carries at most this many issues: enough to fix a bundle, bounded for a hostile one. */
export const MAX_ISSUES = 50;

/** What the JSON says before any type is read: issues in document order, and the nulls apart. */
interface JsonFindings {
  issues: Issue[];
  nulls: Issue[];
  /** A resourceType R4 does not define: the typed walk has no definitions to read it by. */
  unknownType: boolean;
}

/**
 * One pass over the JSON for what the typed walk cannot see: a resourceType
 * R4 does not define, empty strings and objects (which R4 JSON never has and
 * the typed walk reads as absent), `null` (allowed only in a primitive array
 * whose `_name` has an entry at that index), and a RESTful fullUrl that names
 * another resource than its entry's.
 */
function scanJson(node: unknown, path: string, found: JsonFindings): void {
  const add = (type: IssueType, diagnostics: string, at: string) =>
    found.issues.push({ type, diagnostics: `${at} ${diagnostics}`, expression: [at] });
  if (node === '') add('value', 'is an empty string (R4 JSON has no empty values)', path);
  else if (Array.isArray(node))
    node.forEach((v, i) => {
      // An array in an array is no R4 JSON at all: its nulls are named too.
      if (Array.isArray(v)) v.forEach((w, j) => w === null && found.nulls.push(nullIssue(`${path}[${i}][${j}]`)));
      scanJson(v, `${path}[${i}]`, found);
    });
  else if (typeof node === 'object' && node !== null) {
    const o = node as Record<string, unknown>;
    if (Object.keys(o).length === 0) add('structure', 'is an empty object (R4 JSON has no empty values)', path);
    if ('resourceType' in o && (typeof o.resourceType !== 'string' || !isResourceType(o.resourceType))) {
      add('structure', 'is not an R4 resource type', `${path}.resourceType`);
      found.unknownType = true;
    }
    if (o.resourceType === 'Bundle' && Array.isArray(o.entry))
      o.entry.forEach((e, i) => {
        const bad = fullUrlIdIssue(e, `${path}.entry[${i}]`);
        if (bad) found.issues.push(bad);
      });
    for (const key in o) {
      const v = o[key];
      const at = `${path}.${key}`;
      if (v === null) found.nulls.push(nullIssue(at));
      else if (Array.isArray(v))
        v.forEach((item, i) => {
          const partner = o[key.startsWith('_') ? key.slice(1) : `_${key}`] as unknown[] | undefined;
          if (item === null && !partner?.[i]) found.nulls.push(nullIssue(`${at}[${i}]`));
        });
      if (key !== 'resourceType') scanJson(v, at, found);
    }
  }
}

const nullIssue = (at: string): Issue => ({
  type: 'structure',
  diagnostics: `${at}: Invalid null value`,
  expression: [at],
});

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
  const out: Issue[] = [];
  for (const i of issues) {
    const at = i.expression?.[0] ?? '';
    if (seen.has(at)) continue;
    seen.add(at);
    out.push(i);
    if (out.length === MAX_ISSUES) break;
  }
  return out;
}

/**
 * Every error-level R4 issue of a resource and everything in it: one pass
 * over the JSON, then one typed walk (R4Walk) over the R4 definitions —
 * structure, cardinality, types, required bindings and invariants, each with
 * its IssueType and the FHIRPath of the element. Empty when it is valid R4.
 */
export function r4Issues(resource: Record<string, unknown>): Issue[] {
  ensureR4Definitions();
  const type = typeof resource.resourceType === 'string' ? resource.resourceType : undefined;
  const root = type ?? 'Resource';
  const json: JsonFindings = { issues: [], nulls: [], unknownType: false };
  scanJson(resource, root, json);
  if (json.unknownType) return onePerElement(json.issues);
  if (!type)
    return onePerElement([
      ...json.issues,
      { type: 'structure', diagnostics: 'Resource: Missing resource type', expression: ['Resource'] },
    ]);
  const walk = new R4Walk(resource, type);
  try {
    walk.run();
  } catch {
    return unreadable(root);
  }
  return onePerElement([...json.issues, ...walk.rootIssues, ...json.nulls, ...walk.issues]);
}

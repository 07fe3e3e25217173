import type { Issue } from '../errors.ts';

/**
 * The gateway's own rules for a Bundle, on top of R4: every fullUrl is an
 * absolute URL or a urn:uuid:/urn:oid: URN, present in messages and
 * documents; every internal reference
 * (urn:uuid:/urn:oid:, #contained) resolves. A Bundle inside a Bundle (a
 * document carried in a message) resolves its own references, not against
 * the outer one.
 */
type Json = Record<string, unknown>;
const UUID_URN = /^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const OID_URN = /^urn:oid:[0-2](\.(0|[1-9]\d*))+$/;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const issue = (type: Issue['type'], diagnostics: string, expression: string): Issue => ({
  type,
  diagnostics,
  expression: [expression],
});

/** An absolute http(s) URL, or undefined. */
function httpUrl(url: string): URL | undefined {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u : undefined;
  } catch {
    return undefined;
  }
}

function fullUrlIssue(url: unknown, at: string): Issue | undefined {
  if (typeof url !== 'string') return undefined; // a wrong JSON type is an R4 issue
  if (UUID_URN.test(url) || OID_URN.test(url)) return undefined;
  const u = httpUrl(url);
  if (!u) return issue('value', `${at} must be an absolute URL or a urn:uuid:/urn:oid: URN, not a relative one`, at);
  return undefined;
}

/** Every Reference.reference in a resource, with its FHIRPath; a nested Bundle is a scope of its own. */
type Nested = Array<{ bundle: Json; path: string }>;

function collectReferences(node: unknown, path: string, out: Array<{ ref: string; path: string }>, nested: Nested) {
  if (Array.isArray(node)) {
    node.forEach((v, i) => collectReferences(v, `${path}[${i}]`, out, nested));
    return;
  }
  if (!isObject(node)) return;
  for (const key in node) {
    const v = node[key];
    if (key === 'reference' && typeof v === 'string') out.push({ ref: v, path: `${path}.reference` });
    else if (isObject(v) && v.resourceType === 'Bundle') nested.push({ bundle: v, path: `${path}.${key}` });
    else if (key !== 'contained' && typeof v === 'object' && v !== null)
      collectReferences(v, `${path}.${key}`, out, nested);
  }
}

export function bundleRuleIssues(bundle: Json, path: string): Issue[] {
  const issues: Issue[] = [];
  const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
  const fullUrls = new Set<string>();
  const refs: Array<{ ref: string; path: string; contained: Set<string> }> = [];
  const nested: Nested = [];
  entries.forEach((entry: unknown, i) => {
    const at = `${path}.entry[${i}]`;
    if (!isObject(entry)) return;
    const resource = entry.resource;
    if (entry.fullUrl === undefined) {
      if (bundle.type === 'message' || bundle.type === 'document')
        issues.push(issue('required', `${at}.fullUrl is required in a ${bundle.type} bundle`, `${at}.fullUrl`));
    } else {
      const bad = fullUrlIssue(entry.fullUrl, `${at}.fullUrl`);
      if (bad) issues.push(bad);
      if (typeof entry.fullUrl === 'string') fullUrls.add(entry.fullUrl);
    }
    if (!isObject(resource)) return;
    if (resource.resourceType === 'Bundle') {
      nested.push({ bundle: resource, path: `${at}.resource` });
      return;
    }
    const contained = new Set<string>();
    if (Array.isArray(resource.contained))
      for (const c of resource.contained) if (isObject(c) && typeof c.id === 'string') contained.add(c.id);
    const found: Array<{ ref: string; path: string }> = [];
    collectReferences(resource, `${at}.resource`, found, nested);
    for (const f of found) refs.push({ ...f, contained });
  });
  for (const { ref, path: at, contained } of refs) {
    if (ref.startsWith('#')) {
      if (ref.length > 1 && !contained.has(ref.slice(1)))
        issues.push(issue('invariant', `${at} names no contained resource`, at));
    } else if ((ref.startsWith('urn:uuid:') || ref.startsWith('urn:oid:')) && !fullUrls.has(ref)) {
      issues.push(issue('invariant', `${at} does not resolve to any Bundle.entry.fullUrl of its Bundle`, at));
    }
  }
  for (const n of nested) issues.push(...bundleRuleIssues(n.bundle, n.path));
  return issues;
}

/** bdl-7 names the whole Bundle; point at the first entry whose fullUrl (and version) repeats an earlier one. */
export function locateDuplicateFullUrl(bundle: Json, i: Issue): Issue {
  if (!/bdl-7/.test(i.diagnostics) || !i.expression?.[0]) return i;
  const at = i.expression[0];
  let node: unknown = bundle;
  for (const step of at.split(/\.|(?=\[)/).slice(1))
    node = step.startsWith('[') ? (node as unknown[])?.[Number(step.slice(1, -1))] : (node as Json)?.[step];
  const seen = new Set<string>();
  const entries = isObject(node) && Array.isArray(node.entry) ? node.entry : [];
  for (const [n, e] of entries.entries()) {
    if (!isObject(e) || typeof e.fullUrl !== 'string') continue;
    const version = ((e.resource as Json | undefined)?.meta as Json | undefined)?.versionId;
    const key = `${e.fullUrl} ${typeof version === 'string' ? version : ''}`;
    if (seen.has(key)) return { ...i, expression: [`${at}.entry[${n}].fullUrl`] };
    seen.add(key);
  }
  return i;
}

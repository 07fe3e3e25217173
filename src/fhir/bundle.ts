import { GatewayError } from '../errors.ts';
import { required } from '../required.ts';

/** Bundle types the gateway exchanges; searchset/history/responses are server artefacts, not records to send. */
export const EXCHANGE_BUNDLE_TYPES = ['message', 'document', 'transaction', 'batch', 'collection'] as const;
export type ExchangeBundleType = (typeof EXCHANGE_BUNDLE_TYPES)[number];

const ALL_BUNDLE_TYPES = new Set([
  'document',
  'message',
  'transaction',
  'transaction-response',
  'batch',
  'batch-response',
  'history',
  'searchset',
  'collection',
]);
const UUID_URN = /^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const OID_URN = /^urn:oid:[0-2](\.(0|[1-9]\d*))+$/;
const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;

type Json = Record<string, unknown>;

const invalid = (message: string, expression: string) => new GatewayError('INVALID_FHIR', message, { expression });
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function checkFullUrl(url: unknown, where: string): string {
  if (typeof url !== 'string') throw invalid(`${where} must be a string`, where);
  if (UUID_URN.test(url) || OID_URN.test(url)) return url;
  let u: URL | undefined;
  try {
    u = new URL(url);
  } catch {
    u = undefined;
  }
  if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
    throw invalid(
      `${where} must be an absolute URL or a urn:uuid:/urn:oid: URN, not ${JSON.stringify(url.slice(0, 80))}`,
      where,
    );
  }
  if (/\/_history\//.test(u.pathname)) throw invalid(`${where} must not be version specific (bdl-8)`, where);
  return url;
}

/** Collect every Reference.reference in a resource, with its FHIRPath. */
function collectReferences(node: unknown, path: string[], out: Array<{ ref: string; path: string }>): void {
  if (Array.isArray(node)) {
    node.forEach((v, i) => {
      if (typeof v === 'object' && v !== null) {
        path.push(`[${i}]`);
        collectReferences(v, path, out);
        path.pop();
      }
    });
    return;
  }
  if (!isObject(node)) return;
  for (const key in node) {
    const v = node[key];
    if (key === 'reference' && typeof v === 'string') out.push({ ref: v, path: `${path.join('')}.reference` });
    else if (key !== 'contained' && typeof v === 'object' && v !== null) {
      path.push(`.${key}`);
      collectReferences(v, path, out);
      path.pop();
    }
  }
}

export interface BundleSummary {
  type: ExchangeBundleType;
  entries: number;
}

/**
 * Structural FHIR R4 checks of a Bundle before it is signed for anyone:
 * resourceType, type, entry shape, fullUrl form and uniqueness (bdl-7/8),
 * MessageHeader first in messages and Composition first in documents, and
 * every internal reference (urn:uuid:/urn:oid:, #contained) resolvable.
 * Each refusal names the offending element, e.g. Bundle.entry[3].fullUrl.
 */
export function checkBundle(body: unknown): BundleSummary {
  if (!isObject(body)) throw invalid('the body must be a JSON object (a FHIR Bundle)', 'Bundle');
  if (body.resourceType !== 'Bundle') {
    throw invalid(
      `expected a Bundle, got resourceType ${JSON.stringify(body.resourceType ?? null)}`,
      'Bundle.resourceType',
    );
  }
  const type = body.type;
  if (typeof type !== 'string' || !ALL_BUNDLE_TYPES.has(type))
    throw invalid(`Bundle.type ${JSON.stringify(type ?? null)} is not a FHIR R4 bundle type`, 'Bundle.type');
  if (!(EXCHANGE_BUNDLE_TYPES as readonly string[]).includes(type)) {
    throw invalid(
      `Bundle.type ${type} cannot be exchanged; use one of ${EXCHANGE_BUNDLE_TYPES.join(', ')}`,
      'Bundle.type',
    );
  }
  const entries = body.entry ?? [];
  if (!Array.isArray(entries)) throw invalid('Bundle.entry must be an array', 'Bundle.entry');
  const fullUrls = new Map<string, number>();
  const refs: Array<{ ref: string; path: string; contained: Set<string> }> = [];
  entries.forEach((entry: unknown, i) => {
    const at = `Bundle.entry[${i}]`;
    if (!isObject(entry)) throw invalid(`${at} must be an object`, at);
    const resource = entry.resource;
    if (entry.fullUrl !== undefined) {
      const url = checkFullUrl(entry.fullUrl, `${at}.fullUrl`);
      const first = fullUrls.get(url);
      if (first !== undefined)
        throw invalid(`${at}.fullUrl duplicates Bundle.entry[${first}].fullUrl (bdl-7)`, `${at}.fullUrl`);
      fullUrls.set(url, i);
    } else if (type === 'message' || type === 'document') {
      throw invalid(`${at}.fullUrl is required in a ${type} bundle`, `${at}.fullUrl`);
    }
    if (resource === undefined) {
      if (type !== 'transaction' && type !== 'batch') throw invalid(`${at}.resource is required`, `${at}.resource`);
      return;
    }
    if (
      !isObject(resource) ||
      typeof resource.resourceType !== 'string' ||
      !RESOURCE_TYPE.test(resource.resourceType)
    ) {
      throw invalid(`${at}.resource must be a resource with a resourceType`, `${at}.resource.resourceType`);
    }
    const contained = new Set<string>();
    if (Array.isArray(resource.contained))
      for (const c of resource.contained) if (isObject(c) && typeof c.id === 'string') contained.add(c.id);
    const found: Array<{ ref: string; path: string }> = [];
    collectReferences(resource, [`${at}.resource`], found);
    for (const f of found) refs.push({ ...f, contained });
  });
  if (type === 'message') checkMessageHeader(entries as Json[]);
  if (type === 'document') {
    const first = (entries[0] as Json | undefined)?.resource as Json | undefined;
    if (first?.resourceType !== 'Composition')
      throw invalid('a document bundle must start with a Composition (bdl-11)', 'Bundle.entry[0].resource');
  }
  for (const { ref, path, contained } of refs) {
    if (ref.startsWith('#')) {
      if (ref.length > 1 && !contained.has(ref.slice(1)))
        throw invalid(`${path} ${JSON.stringify(ref)} names no contained resource`, path);
    } else if ((ref.startsWith('urn:uuid:') || ref.startsWith('urn:oid:')) && !fullUrls.has(ref)) {
      throw invalid(`${path} ${JSON.stringify(ref)} does not resolve to any Bundle.entry.fullUrl`, path);
    }
  }
  return { type: type as ExchangeBundleType, entries: entries.length };
}

/** MessageHeader rules (R4): first entry, event[x], source.endpoint, and at least one destination with an endpoint. */
function checkMessageHeader(entries: Json[]): void {
  const at = 'Bundle.entry[0].resource';
  const header = entries[0]?.resource as Json | undefined;
  if (header?.resourceType !== 'MessageHeader')
    throw invalid('a message bundle must start with a MessageHeader (bdl-12)', at);
  const event = header.eventCoding as Json | undefined;
  if (!(isObject(event) && typeof event.code === 'string') && typeof header.eventUri !== 'string') {
    throw invalid('MessageHeader needs event[x] (eventCoding with a code, or eventUri)', `${at}.event`);
  }
  const source = header.source as Json | undefined;
  if (!isObject(source) || typeof source.endpoint !== 'string')
    throw invalid('MessageHeader.source.endpoint is required', `${at}.source.endpoint`);
  const dest = header.destination;
  if (!Array.isArray(dest) || dest.length === 0)
    throw invalid('MessageHeader.destination needs at least one recipient', `${at}.destination`);
  dest.forEach((d: unknown, i) => {
    if (!isObject(d) || typeof d.endpoint !== 'string')
      throw invalid(`MessageHeader.destination[${i}].endpoint is required`, `${at}.destination[${i}].endpoint`);
  });
}

/** Recipient references of a message: per destination, receiver.identifier.value and the endpoint. */
export function messageDestinations(bundle: Json): Array<{ index: number; receiver?: string; endpoint: string }> {
  const header = required((bundle.entry as Json[])[0], 'a validated message Bundle to start with its header')
    .resource as Json;
  return (header.destination as Json[]).map((d, index) => {
    const receiver = ((d.receiver as Json | undefined)?.identifier as Json | undefined)?.value;
    return { index, endpoint: d.endpoint as string, ...(typeof receiver === 'string' ? { receiver } : {}) };
  });
}

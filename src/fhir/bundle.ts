import { GatewayError, type Issue } from '../errors.ts';
import { r4Issues } from './r4-validate.ts';
import { bundleRuleIssues, locateDuplicateFullUrl } from './bundle-rules.ts';

/** Bundle types the gateway exchanges; searchset/history/responses are server artefacts, not records to send. */
export const EXCHANGE_BUNDLE_TYPES = ['message', 'document', 'transaction', 'batch', 'collection'] as const;
export type ExchangeBundleType = (typeof EXCHANGE_BUNDLE_TYPES)[number];

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const issue = (type: Issue['type'], diagnostics: string, expression: string): Issue => ({
  type,
  diagnostics,
  expression: [expression],
});

/**
 * Every reason a body cannot be exchanged, as FHIR issues (empty when it
 * can): it must be a Bundle of an exchanged type, valid R4 (r4Issues), and
 * keep the gateway's own rules (bundle-rules.ts). One function, so a
 * caller may weigh the issues (e.g. a lenient mode) before refusing.
 */
export function validateBundleForIntake(body: unknown): Issue[] {
  if (!isObject(body)) return [issue('structure', 'the body must be a JSON object (a FHIR Bundle)', 'Bundle')];
  if (body.resourceType !== 'Bundle') {
    const got = JSON.stringify(typeof body.resourceType === 'string' ? body.resourceType.slice(0, 64) : null);
    return [issue('structure', `expected a Bundle, got resourceType ${got}`, 'Bundle.resourceType')];
  }
  const issues = r4Issues(body).map((i) => locateDuplicateFullUrl(body, i));
  const type = body.type;
  if (typeof type === 'string' && !(EXCHANGE_BUNDLE_TYPES as readonly string[]).includes(type) && !issues.length)
    issues.push(
      issue(
        'not-supported',
        `Bundle.type ${type} cannot be exchanged; use one of ${EXCHANGE_BUNDLE_TYPES.join(', ')}`,
        'Bundle.type',
      ),
    );
  issues.push(...bundleRuleIssues(body, 'Bundle'));
  return issues;
}

export interface BundleSummary {
  type: ExchangeBundleType;
  entries: number;
}

/** validateBundleForIntake, refusing with all its issues (422 INVALID_FHIR) unless there are none. */
export function checkBundle(body: unknown): BundleSummary {
  const issues = validateBundleForIntake(body);
  const [first] = issues;
  if (first) throw new GatewayError('INVALID_FHIR', first.diagnostics, { issues });
  const b = body as Json;
  return { type: b.type as ExchangeBundleType, entries: Array.isArray(b.entry) ? b.entry.length : 0 };
}

/** Recipient references of a message: per destination, receiver.identifier.value and the endpoint (none in R4 is valid). */
export function messageDestinations(bundle: Json): Array<{ index: number; receiver?: string; endpoint: string }> {
  const header = ((bundle.entry as Json[] | undefined)?.[0]?.resource ?? {}) as Json;
  return ((header.destination as Json[] | undefined) ?? []).map((d, index) => {
    const receiver = ((d.receiver as Json | undefined)?.identifier as Json | undefined)?.value;
    return { index, endpoint: d.endpoint as string, ...(typeof receiver === 'string' ? { receiver } : {}) };
  });
}

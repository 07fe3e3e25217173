/**
 * SMART system scopes, in both syntaxes the gateway accepts (v1 `.read`/`.write`,
 * v2 `.cruds` subsets), and the one place that maps them onto permissions.
 * Framework-free so the CLI, the token endpoint and the guard share it.
 */
export const SCOPE_BUNDLE_WRITE = 'system/Bundle.write';
export const SCOPE_ALL_WRITE = 'system/*.write';
/** Own exchanges and inbox messages. */
export const SCOPE_ALL_READ = 'system/*.read';
export const SCOPE_AUDIT_READ = 'system/AuditEvent.read';
/** The client's own FHIR Subscriptions (create, read, update, delete, search). */
export const SCOPE_SUBSCRIPTION_READ = 'system/Subscription.read';
export const SCOPE_SUBSCRIPTION_WRITE = 'system/Subscription.write';
/** Manage clients, partners, keys. Never implied by a wildcard. */
export const SCOPE_ADMIN = 'system/gateway.admin';

/** What discovery advertises: the v1 scopes, then their SMART v2 spellings. */
export const SCOPES_SUPPORTED = [
  SCOPE_BUNDLE_WRITE,
  SCOPE_ALL_WRITE,
  SCOPE_ALL_READ,
  SCOPE_AUDIT_READ,
  SCOPE_SUBSCRIPTION_READ,
  SCOPE_SUBSCRIPTION_WRITE,
  SCOPE_ADMIN,
  'system/Bundle.c',
  'system/Bundle.cud',
  'system/*.cud',
  'system/*.rs',
  'system/AuditEvent.rs',
  'system/Subscription.cruds',
] as const;

/** A permission on a resource type: SMART v2's c r u d s, plus the gateway's own admin. */
type Action = 'c' | 'r' | 'u' | 'd' | 's' | 'admin';

interface Permission {
  type: string;
  actions: readonly Action[];
}

/**
 * Resource types a wildcard never reaches: reading the whole audit trail and
 * administering the gateway are roles of their own, granted by name.
 */
const NOT_BY_WILDCARD = new Set(['AuditEvent', 'gateway']);
/** Not a FHIR type: its one permission is admin, which v2's letters cannot spell. */
const GATEWAY = 'gateway';

const V1_RE = /^system\/(\*|[A-Za-z][A-Za-z0-9]{0,63})\.(read|write|admin|\*)$/;
/** v2: a non-empty subset of c r u d s in that order; no ?query parameters. */
const V2_RE = /^system\/(\*|[A-Za-z][A-Za-z0-9]{0,63})\.(?=[cruds])(c?r?u?d?s?)$/;

/** SMART's v1-to-v2 equivalence: read = rs, write = cud. */
const V1_GRANTS: Record<string, readonly Action[]> = {
  read: ['r', 's'],
  write: ['c', 'u', 'd'],
  admin: ['admin'],
  '*': ['c', 'r', 'u', 'd', 's', 'admin'],
};
/**
 * What a route guarded by a v1 scope needs. Every write the gateway offers
 * creates something (a message, an upload, an acknowledgement), so `.write`
 * on a route asks for create only; a read route lists as well as reads.
 */
const V1_NEEDS: Record<string, readonly Action[]> = { ...V1_GRANTS, write: ['c'] };

function parse(scope: string, v1: Record<string, readonly Action[]>): Permission | undefined {
  const m1 = V1_RE.exec(scope);
  if (m1) return { type: m1[1] ?? '', actions: v1[m1[2] ?? ''] ?? [] };
  const m2 = V2_RE.exec(scope);
  if (!m2 || m2[1] === GATEWAY) return undefined;
  return { type: m2[1] ?? '', actions: [...(m2[2] ?? '')] as Action[] };
}

/** A scope as held by a client or a token. */
const granted = (scope: string) => parse(scope, V1_GRANTS);
/** A scope as demanded by a route. */
const needed = (scope: string) => parse(scope, V1_NEEDS);

export function isValidScope(scope: string): boolean {
  return granted(scope) !== undefined;
}

/** Split a space-separated scope string, dropping empties and duplicates. */
export function parseScopes(raw: string): string[] {
  return [...new Set(raw.split(/\s+/).filter(Boolean))];
}

/** Does this grant allow `action` on `type`? A wildcard type reaches every type but NOT_BY_WILDCARD. */
function allows(grant: Permission, type: string, action: Action): boolean {
  if (!grant.actions.includes(action)) return false;
  return grant.type === type || (grant.type === '*' && type !== '*' && !NOT_BY_WILDCARD.has(type));
}

/** Every action of `want` is allowed by some grant (grants add up: .r plus .s is .rs). */
function covered(grants: readonly string[], want: Permission | undefined): boolean {
  if (!want || want.actions.length === 0) return false;
  const held = grants.map(granted).filter((g): g is Permission => g !== undefined);
  return want.actions.every((a) => held.some((g) => allows(g, want.type, a)));
}

/**
 * Does one granted scope satisfy one required (route) scope?
 * system/*.write satisfies system/Bundle.write and system/Bundle.c; system/*.rs
 * satisfies system/*.read; a wildcard never reaches the types in NOT_BY_WILDCARD.
 */
export function scopeSatisfies(grantedScope: string, required: string): boolean {
  return grantedScope === required || covered([grantedScope], needed(required));
}

/** Do the granted scopes together satisfy at least one of the route's required scopes? */
export function hasAnyScope(grants: readonly string[], anyOf: readonly string[]): boolean {
  return anyOf.some((req) => grants.includes(req) || covered(grants, needed(req)));
}

/**
 * May a client registered with `registered` be granted `requested`? Every
 * permission the requested scope carries must be registered, whichever syntax
 * either side is written in (system/Bundle.write covers system/Bundle.c, not
 * the reverse).
 */
export function scopeWithin(registered: readonly string[], requested: string): boolean {
  return covered(registered, granted(requested));
}

/**
 * A client that may read the inbox but is routed to no partner sees no message at all (routing fails
 * closed); one that administers the gateway sees every message anyway.
 */
export function readsButReceivesNothing(scopes: readonly string[], receivesFrom: readonly string[]): boolean {
  return receivesFrom.length === 0 && hasAnyScope(scopes, [SCOPE_ALL_READ]) && !hasAnyScope(scopes, [SCOPE_ADMIN]);
}

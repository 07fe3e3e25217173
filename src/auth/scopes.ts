/**
 * SMART v1 system scopes the gateway understands, and the one matching rule.
 * Framework-free so the CLI, the token endpoint and the guard share it.
 */
export const SCOPE_BUNDLE_WRITE = 'system/Bundle.write';
export const SCOPE_ALL_WRITE = 'system/*.write';
/** Own exchanges and inbox messages. */
export const SCOPE_ALL_READ = 'system/*.read';
export const SCOPE_AUDIT_READ = 'system/AuditEvent.read';
/** Manage clients, partners, keys. Never implied by a wildcard. */
export const SCOPE_ADMIN = 'system/gateway.admin';

export const SCOPES_SUPPORTED = [
  SCOPE_BUNDLE_WRITE,
  SCOPE_ALL_WRITE,
  SCOPE_ALL_READ,
  SCOPE_AUDIT_READ,
  SCOPE_ADMIN,
] as const;

/**
 * Resource types a wildcard never reaches: reading the whole audit trail and
 * administering the gateway are roles of their own, granted by name.
 */
const NOT_BY_WILDCARD = new Set(['AuditEvent', 'gateway']);

const SCOPE_RE = /^system\/(\*|[A-Za-z][A-Za-z0-9]{0,63})\.(read|write|admin|\*)$/;

export function isValidScope(scope: string): boolean {
  return SCOPE_RE.test(scope);
}

/** Split a space-separated scope string, dropping empties and duplicates. */
export function parseScopes(raw: string): string[] {
  return [...new Set(raw.split(/\s+/).filter(Boolean))];
}

/**
 * Does one granted scope satisfy one required scope?
 * system/*.write satisfies system/Bundle.write; system/*.read satisfies
 * system/X.read, except for the types in NOT_BY_WILDCARD.
 */
export function scopeSatisfies(granted: string, required: string): boolean {
  if (granted === required) return true;
  const g = SCOPE_RE.exec(granted);
  const r = SCOPE_RE.exec(required);
  if (!g || !r) return false;
  const [, gType, gAction] = g;
  // Both groups take part in every match; the default only satisfies the type.
  const [, rType = '', rAction] = r;
  const actionOk = gAction === rAction || gAction === '*';
  if (!actionOk) return false;
  if (gType === rType) return true;
  return gType === '*' && !NOT_BY_WILDCARD.has(rType);
}

export function hasAnyScope(granted: readonly string[], anyOf: readonly string[]): boolean {
  return anyOf.some((req) => granted.some((g) => scopeSatisfies(g, req)));
}

/**
 * A client that may read the inbox but is routed to no partner sees no message at all (routing fails
 * closed); one that administers the gateway sees every message anyway.
 */
export function readsButReceivesNothing(scopes: readonly string[], receivesFrom: readonly string[]): boolean {
  return receivesFrom.length === 0 && hasAnyScope(scopes, [SCOPE_ALL_READ]) && !hasAnyScope(scopes, [SCOPE_ADMIN]);
}

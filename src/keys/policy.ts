import type { GatewayKeyRow, KeyIntent, KeyUse } from './store.ts';
import { required } from '../required.ts';

/** Timings of one key use (milliseconds). */
export interface RotationPolicy {
  /** Cryptoperiod: how long a key stays active. */
  rotationMs: number;
  /** How long a new key is published before it is activated. */
  prepublishMs: number;
  /** How long a deactivated key is kept (decrypt / verify) before it is destroyed in the HSM. */
  retentionMs: number;
}

export type KeyView = Pick<GatewayKeyRow, 'kid' | 'state' | 'published_at' | 'activated_at' | 'deactivated_at'>;
export type IntentView = Pick<KeyIntent, 'action' | 'label' | 'kid' | 'activate'>;

export type RotationStep =
  | { kind: 'generate'; use: KeyUse; activate: boolean; resume?: string }
  | { kind: 'activate'; use: KeyUse; kid: string }
  | { kind: 'destroy'; use: KeyUse; kid: string };

/** What a manual `gateway keys rotate` asks for. */
export interface RotateRequest {
  /** Activate at once instead of after KEY_PREPUBLISH. */
  now: boolean;
}

const t = (d: Date | null) => (d ? d.getTime() : 0);

/**
 * The next step of one use's state machine, decided from the database alone
 * (a pure function: the unit tests drive it with any clock). Unfinished
 * intents come first, so a rerun after a crash completes what was started.
 * Without a request it answers what the schedule makes due; with one, what a
 * manual rotation needs next (callers loop until it answers undefined).
 */
export function dueStep(
  use: KeyUse,
  keys: readonly KeyView[],
  intents: readonly IntentView[],
  policy: RotationPolicy,
  now: Date,
  request?: RotateRequest,
  /** Retired keys whose destruction is held (e.g. stored envelopes still sealed to them). */
  held: ReadonlySet<string> = new Set(),
): RotationStep | undefined {
  const generating = intents.find((i) => i.action === 'generate');
  if (generating)
    return {
      kind: 'generate',
      use,
      activate: generating.activate || Boolean(request?.now),
      resume: generating.label ?? undefined,
    };
  const destroying = intents.find((i) => i.action === 'destroy');
  if (destroying)
    return { kind: 'destroy', use, kid: required(destroying.kid ?? undefined, 'a kid on a destroy intent') };

  const active = keys.find((k) => k.state === 'active');
  const pending = keys
    .filter((k) => k.state === 'pre-activation')
    .sort((a, b) => t(b.published_at) - t(a.published_at))[0];
  const at = now.getTime();

  if (request) {
    // Manual: a pending key is the rotation already asked for; --now activates it without waiting.
    if (pending) return request.now ? { kind: 'activate', use, kid: pending.kid } : undefined;
    return { kind: 'generate', use, activate: request.now };
  }
  // Never leave a use without an active key (first run, or an inventory repaired by hand).
  if (!active) return pending ? { kind: 'activate', use, kid: pending.kid } : { kind: 'generate', use, activate: true };
  if (pending) {
    if (at >= t(pending.published_at) + policy.prepublishMs) return { kind: 'activate', use, kid: pending.kid };
  } else if (at >= t(active.activated_at) + policy.rotationMs - policy.prepublishMs) {
    // Publish now, so the key is activated when the current one reaches its cryptoperiod.
    return { kind: 'generate', use, activate: false };
  }
  const expired = keys
    .filter((k) => k.state === 'deactivated' && at >= t(k.deactivated_at) + policy.retentionMs && !held.has(k.kid))
    .sort((a, b) => t(a.deactivated_at) - t(b.deactivated_at))[0];
  if (expired) return { kind: 'destroy', use, kid: expired.kid };
  return undefined;
}

/** Retired keys due for destruction (the candidates a destroy hold is asked about). */
export function expiredKeys<K extends KeyView>(keys: readonly K[], policy: RotationPolicy, now: Date): K[] {
  return keys.filter((k) => k.state === 'deactivated' && now.getTime() >= t(k.deactivated_at) + policy.retentionMs);
}

/** The moment a key leaves the JWKS and the HSM: deactivation + retention (never, for a use kept forever). */
export function destroyAfter(key: KeyView, policy: RotationPolicy): Date | undefined {
  if (!key.deactivated_at || !Number.isFinite(policy.retentionMs)) return undefined;
  return new Date(key.deactivated_at.getTime() + policy.retentionMs);
}

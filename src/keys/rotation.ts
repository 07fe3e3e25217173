import type pg from 'pg';
import type { Config } from '../config.ts';
import { required } from '../required.ts';
import { dueStep, expiredKeys, type RotateRequest, type RotationPolicy, type RotationStep } from './policy.ts';
import { performStep, type StepDeps } from './rotation-steps.ts';
import { KEY_USES, keysOfUse, listIntents, type KeyUse } from './store.ts';

/** Advisory lock namespace: one rotation (or first-run bootstrap) per use at a time, across processes. */
const ROTATION_LOCK = 7_273_050;
const USE_SLOT: Record<KeyUse, number> = { sig: 1, enc: 2, audit: 3, blinding: 4, 'pq-sig': 5, 'pq-enc': 6 };
/** A run never loops forever, whatever the inventory looks like. */
const MAX_STEPS = 8;

/** Per-use timings from the configuration (see docs/SECURITY.md, Key lifecycle). */
export function rotationPolicies(
  config: Pick<
    Config,
    | 'keySigRotation'
    | 'keyEncRotation'
    | 'keyAuditRotation'
    | 'keyBlindingRotation'
    | 'keyPrepublish'
    | 'keyRetentionMargin'
    | 'deliveryHorizon'
  >,
): Record<KeyUse, RotationPolicy> {
  // Envelopes sealed to a retired enc key, and content signed with a retired sig key, are retried for up to
  // DELIVERY_HORIZON; the margin covers peers' cached JWKS (>= JWKS_MAX_AGE) and clock skew.
  const retentionMs = config.deliveryHorizon + config.keyRetentionMargin;
  const base = { prepublishMs: config.keyPrepublish, retentionMs };
  return {
    sig: { ...base, rotationMs: config.keySigRotation },
    enc: { ...base, rotationMs: config.keyEncRotation },
    audit: { ...base, rotationMs: config.keyAuditRotation },
    // The post-quantum half of a use keeps its classical half's cryptoperiod and retention.
    'pq-sig': { ...base, rotationMs: config.keySigRotation },
    'pq-enc': { ...base, rotationMs: config.keyEncRotation },
    // Nothing outside the gateway holds a copy, so nothing waits for it: active at once. Retired
    // generations stay for lookup (the disclosures they blinded are found only with them): never destroyed.
    blinding: { prepublishMs: 0, retentionMs: Number.POSITIVE_INFINITY, rotationMs: config.keyBlindingRotation },
  };
}

/**
 * Hold the use's advisory lock on a dedicated connection while fn runs. The
 * lock dies with the connection, so a killed worker never leaves it held.
 * wait=false: give up at once if another process holds it (the cron case).
 */
export async function withRotationLock<T>(
  pool: pg.Pool,
  use: KeyUse,
  wait: boolean,
  fn: () => Promise<T>,
): Promise<T | undefined> {
  const client = await pool.connect();
  try {
    if (wait) await client.query('SELECT pg_advisory_lock($1, $2)', [ROTATION_LOCK, USE_SLOT[use]]);
    else {
      const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [
        ROTATION_LOCK,
        USE_SLOT[use],
      ]);
      if (!required(rows[0], 'pg_try_advisory_lock returns one row').ok) return undefined;
    }
    try {
      return await fn();
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, $2)', [ROTATION_LOCK, USE_SLOT[use]]);
    }
  } finally {
    client.release();
  }
}

export interface RotationRun {
  use: KeyUse;
  steps: RotationStep[];
  /** True when another process held the lock and nothing was done. */
  busy?: boolean;
}

/**
 * Perform every step that is due for one use (each step crash-safe on its
 * own), or, with a request, the steps of one manual rotation. Cheap when
 * nothing is due: two small queries.
 */
export async function rotateUse(
  d: StepDeps,
  use: KeyUse,
  policy: RotationPolicy,
  options: { request?: RotateRequest; wait?: boolean } = {},
): Promise<RotationRun> {
  const steps: RotationStep[] = [];
  const done = await withRotationLock(d.pool, use, options.wait ?? false, async () => {
    for (let i = 0; i < MAX_STEPS; i++) {
      const now = d.clock ? d.clock() : new Date();
      const keys = await keysOfUse(d.pool, use);
      const held = new Set<string>();
      if (d.holdDestroy) for (const k of expiredKeys(keys, policy, now)) if (await d.holdDestroy(k)) held.add(k.kid);
      const step = dueStep(use, keys, await listIntents(d.pool, use), policy, now, options.request, held);
      if (!step) break;
      await performStep(d, step);
      steps.push(step);
      // A manual request is satisfied by its generate or activate step; the schedule does the rest.
      if (options.request && step.kind !== 'destroy') break;
    }
    return true;
  });
  return done ? { use, steps } : { use, steps, busy: true };
}

/** The scheduled check for every use (the keys_rotate cron job). */
export async function rotateDue(d: StepDeps, policies: Record<KeyUse, RotationPolicy>): Promise<RotationRun[]> {
  const runs: RotationRun[] = [];
  for (const use of KEY_USES) runs.push(await rotateUse(d, use, policies[use]));
  return runs;
}

import type pg from 'pg';
import type { Hsm } from '../../hsm/hsm.ts';
import { dueStep, type RotationPolicy } from './policy.ts';
import { withRotationLock } from './rotation.ts';
import { performStep } from './rotation-steps.ts';
import { KEY_USES, keysOfUse, listIntents, listKeys } from './store.ts';
import { ensureSecretKeys } from './secret-keys.ts';

// Only the "no active key" branch of the state machine runs here; the schedule is the worker's business.
const FIRST_RUN: RotationPolicy = {
  rotationMs: Number.MAX_SAFE_INTEGER,
  prepublishMs: 0,
  retentionMs: Number.MAX_SAFE_INTEGER,
};

/**
 * On first run, generate one active key per use inside the HSM (P-256: ES256
 * for signatures and checkpoints, ECDH-ES for envelopes), through the same
 * crash-safe steps as rotation, and the AES key that encrypts TOTP secrets.
 * Then check that every key the database says is usable really is on the
 * token, so a gateway whose HSM and database disagree refuses to start.
 */
export async function ensureGatewayKeys(pool: pg.Pool, hsm: Hsm): Promise<string[]> {
  const generated: string[] = [];
  for (const use of KEY_USES) {
    // Waits while another process bootstraps or rotates this use, then sees its result.
    await withRotationLock(pool, use, true, async () => {
      for (let i = 0; i < 4; i++) {
        const keys = await keysOfUse(pool, use);
        if (keys.some((k) => k.state === 'active')) return;
        const step = dueStep(use, keys, await listIntents(pool, use), FIRST_RUN, new Date());
        if (!step) return;
        await performStep({ pool, hsm, actor: { type: 'gateway', id: 'bootstrap' } }, step);
        const now = (await keysOfUse(pool, use)).find((k) => k.state === 'active');
        if (now && !keys.some((k) => k.kid === now.kid)) generated.push(now.kid);
      }
    });
  }
  const destroying = new Set((await listIntents(pool)).filter((i) => i.action === 'destroy').map((i) => i.kid));
  for (const key of await listKeys(pool)) {
    if (key.state === 'destroyed' || destroying.has(key.kid)) continue;
    if (!(await hsm.hasKey(key.hsm_id))) {
      throw new Error(
        `key ${key.kid} (${key.use}, ${key.state}) is in the database but not on the HSM token; the token and the database do not belong together`,
      );
    }
  }
  generated.push(...(await ensureSecretKeys(pool, hsm)));
  return generated;
}

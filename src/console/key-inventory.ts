import type { Queryable } from '../db/pool.ts';
import { committedSize, latestCheckpoint } from '../audit/checkpoint.ts';
import { listKeys, type KeyState, type KeyUse } from '../keys/store.ts';
import { destroyAfter } from '../keys/policy.ts';
import { rotationPolicies } from '../keys/rotation.ts';

export interface KeyLine {
  kid: string;
  use: KeyUse;
  state: KeyState;
  activatedAt: Date | null;
  /** An active key: when the schedule rotates it (activated + its cryptoperiod). */
  nextRotation: Date | null;
  /** A deactivated key: when it may be destroyed in the HSM. */
  destroyAfter: Date | null;
}

/** The gateway's keys that still exist, with the next step the rotation schedule takes for each. */
export async function keyInventory(db: Queryable, config: Parameters<typeof rotationPolicies>[0]): Promise<KeyLine[]> {
  const policies = rotationPolicies(config);
  return (await listKeys(db))
    .filter((k) => k.state !== 'destroyed')
    .map((k) => ({
      kid: k.kid,
      use: k.use,
      state: k.state,
      activatedAt: k.activated_at,
      nextRotation:
        k.state === 'active' && k.activated_at ? new Date(k.activated_at.getTime() + policies[k.use].rotationMs) : null,
      destroyAfter: k.state === 'deactivated' ? (destroyAfter(k, policies[k.use]) ?? null) : null,
    }));
}

export interface CheckpointFreshness {
  issuedAt: Date | null;
  treeSize: number;
  /** Entries appended since the latest checkpoint: not yet covered by a signature. */
  uncovered: number;
}

export async function checkpointFreshness(db: Queryable): Promise<CheckpointFreshness> {
  const cp = await latestCheckpoint(db);
  const size = await committedSize(db);
  return { issuedAt: cp?.issuedAt ?? null, treeSize: cp?.treeSize ?? 0, uncovered: size - (cp?.treeSize ?? 0) };
}

import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Hsm } from '../../hsm/hsm.ts';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import type { AuditEventType } from '../audit/events.ts';
import { inTransaction } from '../db/pool.ts';
import { required } from '../required.ts';
import { thumbprint } from '../jose/thumbprint.ts';
import type { RotationStep } from './policy.ts';
import { BLINDING_JWK, blindingKid } from './blinding.ts';
import { generateWrappedPqKey, type PqAlg } from './pq-keys.ts';
import {
  clearIntent,
  insertPublishedKey,
  keysOfUse,
  listIntents,
  markDestroyed,
  recordIntent,
  swapActive,
  type GatewayKeyRow,
  type KeyJwk,
  type KeyUse,
} from './store.ts';

/** Points between the parts of a step where a crash can happen; tests inject a hook that throws at each. */
export type RotationPoint =
  | 'generate:intent-recorded'
  | 'generate:hsm-generated'
  | 'generate:published'
  | 'activate:before-commit'
  | 'destroy:intent-recorded'
  | 'destroy:hsm-destroyed';

export interface StepDeps {
  pool: pg.Pool;
  hsm: Hsm;
  /** Who asked: the gateway's scheduler or an administrator. */
  actor: NonNullable<AuditInput['agent']>;
  clock?: () => Date;
  hook?: (point: RotationPoint) => void | Promise<void>;
  /**
   * Asked before a retired key is destroyed; a reason holds the destruction
   * (checked again every run). The inbox wires "stored envelopes sealed to
   * this enc key are not acknowledged yet": destroying it would lose them.
   */
  holdDestroy?: (key: GatewayKeyRow) => Promise<string | undefined>;
}

/** 'wrap': a software post-quantum key whose seed only its own token AES key wraps. */
export const KEY_DEFAULTS: Record<KeyUse, { alg: string; usage: 'sign' | 'derive' | 'hmac' | 'wrap' }> = {
  sig: { alg: 'ES256', usage: 'sign' },
  enc: { alg: 'ECDH-ES', usage: 'derive' },
  audit: { alg: 'ES256', usage: 'sign' },
  blinding: { alg: 'HS256', usage: 'hmac' },
  'pq-sig': { alg: 'ML-DSA-65', usage: 'wrap' },
  'pq-enc': { alg: 'ML-KEM-768', usage: 'wrap' },
};

/** A key made on the token, as the inventory records it. */
interface MadeKey {
  kid: string;
  hsmId: string;
  publicJwk: KeyJwk;
  wrappedSeed?: Buffer;
}

/**
 * The key under `label` on the token, adopted if a run before a crash made it
 * (duplicates destroyed), else generated now. A key pair's kid is its public
 * key's thumbprint; a secret key has no public half, so its kid is its check value.
 */
async function keyUnderLabel(d: StepDeps, use: KeyUse, label: string): Promise<MadeKey> {
  const { usage, alg } = KEY_DEFAULTS[use];
  if (usage === 'wrap') {
    // A wrapping key made before a crash is adopted: the seed it never wrapped is simply made now.
    const onToken = (await d.hsm.listSecretKeys()).filter((k) => k.label === label);
    for (const extra of onToken.slice(1)) await d.hsm.destroyKey(extra.id);
    const hsmId = onToken[0]?.id ?? (await d.hsm.generateWrappingKey(label));
    const made = await generateWrappedPqKey(d.hsm, hsmId, alg as PqAlg);
    return { kid: made.kid, hsmId, publicJwk: { kty: 'AKP', alg, pub: made.pub }, wrappedSeed: made.wrapped };
  }
  if (usage === 'hmac') {
    const onToken = (await d.hsm.listSecretKeys()).filter((k) => k.label === label);
    for (const extra of onToken.slice(1)) await d.hsm.destroyKey(extra.id);
    const info = onToken[0] ?? (await d.hsm.generateHmacKey(label));
    return { kid: await blindingKid(d.hsm, info.id), hsmId: info.id, publicJwk: BLINDING_JWK };
  }
  const onToken = (await d.hsm.listKeys()).filter((k) => k.label === label);
  for (const extra of onToken.slice(1)) await d.hsm.destroyKey(extra.id);
  const info = onToken[0] ?? (await d.hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, usage, label));
  return { kid: thumbprint(info.publicJwk), hsmId: info.id, publicJwk: info.publicJwk };
}

const now = (d: StepDeps) => (d.clock ? d.clock() : new Date());
const hook = async (d: StepDeps, p: RotationPoint) => d.hook?.(p);
const keyEvent = (
  d: StepDeps,
  type: AuditEventType,
  use: KeyUse,
  kid: string,
  detail: AuditInput['detail'] = {},
): AuditInput => ({
  type,
  outcome: 'success',
  agent: d.actor,
  entity: [{ type: 'key', id: kid }],
  detail: { use, ...detail },
});

/** A fresh CKA_LABEL, unique so a rerun can find a key made before a crash. */
export const newLabel = (use: KeyUse) => `gateway-${use}-${randomBytes(8).toString('hex')}`;

/**
 * Generate: (1) commit the intent with the planned label, (2) keygen in the
 * HSM under that label, (3) insert the key as pre-activation and published
 * with its audit events, in one transaction. A rerun adopts a key already on
 * the token under the label (and destroys any duplicates) instead of making
 * another, so no orphan is left. With `activate`, the intent is cleared only
 * by the activation transaction, so --now survives a crash too.
 */
export async function generateStep(d: StepDeps, step: Extract<RotationStep, { kind: 'generate' }>): Promise<string> {
  const { use } = step;
  const { alg } = KEY_DEFAULTS[use];
  const label = step.resume || newLabel(use);
  if (!step.resume) {
    await recordIntent(d.pool, { use, action: 'generate', label, kid: null, activate: step.activate }, now(d));
    await hook(d, 'generate:intent-recorded');
  }
  let row = (await keysOfUse(d.pool, use)).find((k) => k.label === label);
  if (!row) {
    const made = await keyUnderLabel(d, use, label);
    await hook(d, 'generate:hsm-generated');
    const { kid } = made;
    const at = now(d);
    await inTransaction(d.pool, async (db) => {
      await insertPublishedKey(
        db,
        { kid, use, alg, hsm_id: made.hsmId, label, public_jwk: made.publicJwk, wrapped_seed: made.wrappedSeed },
        at,
      );
      if (!step.activate) await clearIntent(db, use, 'generate');
      await appendAudit(
        db,
        [keyEvent(d, 'key.generated', use, kid, { alg, hsm_label: label }), keyEvent(d, 'key.published', use, kid)],
        at,
      );
    });
    await hook(d, 'generate:published');
    if (!step.activate) return kid;
    row = required(
      (await keysOfUse(d.pool, use)).find((k) => k.kid === kid),
      'the key just published',
    );
  }
  if (step.activate && row.state === 'pre-activation') await activateStep(d, { kind: 'activate', use, kid: row.kid });
  else await clearIntent(d.pool, use, 'generate');
  return row.kid;
}

/** Activate: old active -> deactivated and new -> active in one transaction, with both audit events. */
export async function activateStep(d: StepDeps, step: Extract<RotationStep, { kind: 'activate' }>): Promise<void> {
  const at = now(d);
  await inTransaction(d.pool, async (db) => {
    const old = await swapActive(db, step.use, step.kid, at);
    await clearIntent(db, step.use, 'generate');
    const events = [keyEvent(d, 'key.activated', step.use, step.kid)];
    if (old) events.unshift(keyEvent(d, 'key.deactivated', step.use, old, { successor: step.kid }));
    await appendAudit(db, events, at);
    await hook(d, 'activate:before-commit');
  });
}

/**
 * Destroy: commit the intent, destroy both halves in the HSM (idempotent),
 * then mark the row destroyed (kept forever, public key included) with its
 * audit event. While the intent stands, boot does not expect the key on the token.
 */
export async function destroyStep(d: StepDeps, step: Extract<RotationStep, { kind: 'destroy' }>): Promise<void> {
  const { use, kid } = step;
  const key = (await keysOfUse(d.pool, use)).find((k) => k.kid === kid);
  if (!key || key.state !== 'deactivated') {
    await clearIntent(d.pool, use, 'destroy');
    return;
  }
  if (!(await listIntents(d.pool, use)).some((i) => i.action === 'destroy')) {
    await recordIntent(d.pool, { use, action: 'destroy', label: null, kid, activate: false }, now(d));
    await hook(d, 'destroy:intent-recorded');
  }
  await d.hsm.destroyKey(key.hsm_id);
  await hook(d, 'destroy:hsm-destroyed');
  const at = now(d);
  await inTransaction(d.pool, async (db) => {
    await markDestroyed(db, kid, at);
    await clearIntent(db, use, 'destroy');
    await appendAudit(db, [keyEvent(d, 'key.destroyed', use, kid)], at);
  });
}

export async function performStep(d: StepDeps, step: RotationStep): Promise<void> {
  if (step.kind === 'generate') await generateStep(d, step);
  else if (step.kind === 'activate') await activateStep(d, step);
  else await destroyStep(d, step);
}

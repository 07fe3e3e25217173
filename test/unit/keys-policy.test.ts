import { describe, expect, it } from 'vitest';
import { dueStep, destroyAfter, type KeyView, type RotationPolicy } from '../../src/keys/policy.ts';
import { rotationPolicies } from '../../src/keys/rotation.ts';
import { loadConfig, ConfigError } from '../../src/config.ts';

const H = 3_600_000;
const D = 24 * H;
const policy: RotationPolicy = { rotationMs: 90 * D, prepublishMs: 2 * D, retentionMs: 2 * D };
const T0 = Date.UTC(2026, 0, 1);
const at = (ms: number) => new Date(T0 + ms);
const key = (
  kid: string,
  state: KeyView['state'],
  times: Partial<Record<'published_at' | 'activated_at' | 'deactivated_at', number>> = {},
): KeyView => ({
  kid,
  state,
  published_at: times.published_at === undefined ? null : at(times.published_at),
  activated_at: times.activated_at === undefined ? null : at(times.activated_at),
  deactivated_at: times.deactivated_at === undefined ? null : at(times.deactivated_at),
});

describe('dueStep: the rotation state machine decides from the inventory and the clock alone', () => {
  const active = key('a', 'active', { published_at: 0, activated_at: 0 });

  it('does nothing while the active key is young', () => {
    expect(dueStep('sig', [active], [], policy, at(10 * D))).toBeUndefined();
  });

  it('publishes the successor KEY_PREPUBLISH before the cryptoperiod ends, not a moment earlier', () => {
    expect(dueStep('sig', [active], [], policy, at(88 * D - 1))).toBeUndefined();
    expect(dueStep('sig', [active], [], policy, at(88 * D))).toEqual({ kind: 'generate', use: 'sig', activate: false });
  });

  it('activates a published key only after KEY_PREPUBLISH', () => {
    const next = key('b', 'pre-activation', { published_at: 88 * D });
    expect(dueStep('enc', [active, next], [], policy, at(90 * D - 1))).toBeUndefined();
    expect(dueStep('enc', [active, next], [], policy, at(90 * D))).toEqual({ kind: 'activate', use: 'enc', kid: 'b' });
  });

  it('destroys a deactivated key after the retention window, oldest first', () => {
    const cur = key('c', 'active', { activated_at: 90 * D });
    const old1 = key('a', 'deactivated', { deactivated_at: 90 * D });
    const old0 = key('z', 'deactivated', { deactivated_at: 89 * D });
    expect(dueStep('enc', [cur, old1], [], policy, at(92 * D - 1))).toBeUndefined();
    expect(dueStep('enc', [cur, old1, old0], [], policy, at(92 * D))).toEqual({
      kind: 'destroy',
      use: 'enc',
      kid: 'z',
    });
    expect(destroyAfter(old1, policy)).toEqual(at(92 * D));
  });

  it('never destroys the active or a pre-activation key, nor an already destroyed one', () => {
    const keys = [
      key('c', 'active', { activated_at: 0 }),
      key('p', 'pre-activation', { published_at: 100 * D }),
      key('x', 'destroyed', { deactivated_at: 0 }),
    ];
    expect(dueStep('sig', keys, [], policy, at(100 * D + 1))).toBeUndefined();
  });

  it('resumes an unfinished step before anything else (crash recovery)', () => {
    expect(
      dueStep('sig', [active], [{ action: 'generate', label: 'L', kid: null, activate: false }], policy, at(1)),
    ).toEqual({ kind: 'generate', use: 'sig', activate: false, resume: 'L' });
    expect(
      dueStep(
        'sig',
        [active, key('o', 'deactivated', { deactivated_at: 0 })],
        [{ action: 'destroy', label: null, kid: 'o', activate: false }],
        policy,
        at(1),
      ),
    ).toEqual({ kind: 'destroy', use: 'sig', kid: 'o' });
  });

  it('repairs a use without an active key: activates the pending one, or generates and activates', () => {
    expect(dueStep('audit', [], [], policy, at(0))).toEqual({ kind: 'generate', use: 'audit', activate: true });
    expect(dueStep('audit', [key('p', 'pre-activation', { published_at: 0 })], [], policy, at(0))).toEqual({
      kind: 'activate',
      use: 'audit',
      kid: 'p',
    });
  });

  it('manual rotation: publish now; --now activates at once, reusing a key already published', () => {
    expect(dueStep('sig', [active], [], policy, at(1), { now: false })).toEqual({
      kind: 'generate',
      use: 'sig',
      activate: false,
    });
    expect(dueStep('sig', [active], [], policy, at(1), { now: true })).toEqual({
      kind: 'generate',
      use: 'sig',
      activate: true,
    });
    const next = key('b', 'pre-activation', { published_at: 0 });
    expect(dueStep('sig', [active, next], [], policy, at(1), { now: false })).toBeUndefined();
    expect(dueStep('sig', [active, next], [], policy, at(1), { now: true })).toEqual({
      kind: 'activate',
      use: 'sig',
      kid: 'b',
    });
  });
});

describe('key lifecycle configuration', () => {
  const base = { HSM_PIN: '1' };
  it('defaults: 90d signing, 30d encryption, 365d audit, 2d prepublish; retention = DELIVERY_HORIZON + margin', () => {
    const c = loadConfig(base);
    expect([c.keySigRotation, c.keyEncRotation, c.keyAuditRotation, c.keyPrepublish]).toEqual([
      90 * D,
      30 * D,
      365 * D,
      2 * D,
    ]);
    expect(c.partnerJwksRefresh).toBe(H);
    const p = rotationPolicies(c);
    expect(p.enc.retentionMs).toBe(c.deliveryHorizon + c.keyRetentionMargin);
    expect(p.sig.rotationMs).toBe(90 * D);
  });

  it('blinding: 365d, active at once, and a retired blinding key is never due for destruction', () => {
    const p = rotationPolicies(loadConfig(base)).blinding;
    expect(p).toEqual({ rotationMs: 365 * D, prepublishMs: 0, retentionMs: Number.POSITIVE_INFINITY });
    const old = key('old', 'deactivated', { published_at: 0, activated_at: 0, deactivated_at: 365 * D });
    const now = key('new', 'active', { published_at: 365 * D, activated_at: 365 * D });
    // Long after its retirement the old key stays: lookups still need it. The new one rotates on schedule.
    expect(dueStep('blinding', [old, now], [], p, at(500 * D))).toBeUndefined();
    expect(dueStep('blinding', [old, now], [], p, at(730 * D))).toEqual({
      kind: 'generate',
      use: 'blinding',
      activate: false,
    });
    expect(destroyAfter(old, p)).toBeUndefined();
    // Published and activated in the same run: nothing outside the gateway waits for it.
    const pending = key('next', 'pre-activation', { published_at: 730 * D });
    expect(dueStep('blinding', [old, now, pending], [], p, at(730 * D))).toEqual({
      kind: 'activate',
      use: 'blinding',
      kid: 'next',
    });
  });

  it('refuses KEY_PREPUBLISH not above JWKS_MAX_AGE, a margin below it, and a rotation shorter than the prepublication', () => {
    const fail = (env: Record<string, string>) => {
      try {
        loadConfig({ ...base, ...env });
      } catch (err) {
        return (err as ConfigError).problems.join('\n');
      }
      throw new Error('accepted');
    };
    expect(fail({ KEY_PREPUBLISH: '5m', JWKS_MAX_AGE: '10m' })).toMatch(/KEY_PREPUBLISH must exceed JWKS_MAX_AGE/);
    expect(fail({ KEY_RETENTION_MARGIN: '1m' })).toMatch(/KEY_RETENTION_MARGIN must be at least JWKS_MAX_AGE/);
    expect(fail({ KEY_ENC_ROTATION: '1d' })).toMatch(/KEY_ENC_ROTATION must exceed KEY_PREPUBLISH/);
    expect(fail({ KEY_SIG_ROTATION: 'soon' })).toMatch(/KEY_SIG_ROTATION/);
  });
});

import { afterAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { Hsm } from '../../hsm/hsm.ts';
import { createPool } from '../../src/db/pool.ts';
import { blindingKid } from '../../src/keys/blinding.ts';
import { ensureGatewayKeys } from '../../src/keys/bootstrap.ts';
import type { RotationPolicy } from '../../src/keys/policy.ts';
import { rotateUse } from '../../src/keys/rotation.ts';
import type { RotationPoint, StepDeps } from '../../src/keys/rotation-steps.ts';
import { KEY_USES, listIntents, listKeys } from '../../src/keys/store.ts';
import { createTestDatabase } from '../helpers/db.ts';
import { createTestToken } from '../helpers/hsm.ts';

const S = 1_000;
const policy: RotationPolicy = { rotationMs: 100 * S, prepublishMs: 10 * S, retentionMs: 20 * S };
const POINTS: RotationPoint[] = [
  'generate:intent-recorded',
  'generate:hsm-generated',
  'generate:published',
  'activate:before-commit',
  'destroy:intent-recorded',
  'destroy:hsm-destroyed',
];
const quiet = { warn: () => undefined };

class Crash extends Error {}

/** Exactly one active key per use, never zero published keys, and the token agrees with the inventory. */
async function checkInvariants(pool: pg.Pool, hsm: Hsm, opts: { settled: boolean }) {
  const keys = await listKeys(pool);
  for (const use of KEY_USES) {
    expect(
      keys.filter((k) => k.use === use && k.state === 'active'),
      `${use} active keys`,
    ).toHaveLength(1);
    expect(
      keys.filter((k) => k.use === use && k.state !== 'destroyed').length,
      `${use} published keys`,
    ).toBeGreaterThan(0);
  }
  // Key pairs (sig, enc, audit) and the blinding secret key alike.
  const onToken = new Set([...(await hsm.listKeys()), ...(await hsm.listSecretKeys())].map((k) => k.id));
  const intents = await listIntents(pool);
  const destroying = new Set(intents.filter((i) => i.action === 'destroy').map((i) => i.kid));
  for (const k of keys) {
    if (k.state === 'destroyed') expect(onToken.has(k.hsm_id), `destroyed ${k.kid} gone from the token`).toBe(false);
    else if (!destroying.has(k.kid)) expect(onToken.has(k.hsm_id), `${k.state} ${k.kid} on the token`).toBe(true);
  }
  if (opts.settled) {
    // After a completed run: no intent left, and nothing on the token that the inventory does not know (no orphan).
    expect(intents).toEqual([]);
    const known = new Set(keys.filter((k) => k.state !== 'destroyed').map((k) => k.hsm_id));
    // The secret keys outside the rotation schedule (such as the one sealing TOTP secrets) are known too.
    const secrets = await pool.query<{ hsm_id: string }>('SELECT hsm_id FROM gateway_secret_keys');
    for (const r of secrets.rows) known.add(r.hsm_id);
    expect([...onToken].sort()).toEqual([...known].sort());
  }
}

describe('key rotation is crash-safe: killed at every step, invariants hold and a rerun completes the step', () => {
  const closers: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
  });

  for (const point of POINTS) {
    it(`crash at ${point}`, async () => {
      const pool = createPool(await createTestDatabase(), quiet, 5);
      const token = createTestToken();
      const hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 2 });
      closers.push(
        () => hsm.close(),
        () => pool.end(),
      );
      await ensureGatewayKeys(pool, hsm);
      const first = (await listKeys(pool)).find((k) => k.use === 'enc' && k.state === 'active')!;

      let now = Date.now();
      let crashed = 0;
      const deps: StepDeps = {
        pool,
        hsm,
        actor: { type: 'gateway', id: 'test' },
        clock: () => new Date(now),
        hook: (p) => {
          if (p === point && crashed === 0) {
            crashed++;
            throw new Crash(`killed at ${p}`);
          }
        },
      };
      /** Run the rotation; a crash is followed by an invariant check and a rerun, as a restarted worker would do. */
      const run = async () => {
        const before = crashed;
        const r = await rotateUse(deps, 'enc', policy).catch((err) => {
          if (!(err instanceof Crash)) throw err;
          return undefined;
        });
        if (crashed > before) {
          await checkInvariants(pool, hsm, { settled: false });
          const again = await rotateUse(deps, 'enc', policy);
          return again;
        }
        return r!;
      };

      now += policy.rotationMs - policy.prepublishMs;
      await run();
      let keys = await listKeys(pool);
      const next = keys.find((k) => k.use === 'enc' && k.state === 'pre-activation')!;
      expect(next, 'successor published').toBeDefined();
      expect(keys.find((k) => k.kid === first.kid)!.state).toBe('active');
      await checkInvariants(pool, hsm, { settled: true });

      now += policy.prepublishMs;
      await run();
      keys = await listKeys(pool);
      expect(keys.find((k) => k.kid === next.kid)!.state).toBe('active');
      expect(keys.find((k) => k.kid === first.kid)!.state).toBe('deactivated');
      await checkInvariants(pool, hsm, { settled: true });

      now += policy.retentionMs;
      await run();
      keys = await listKeys(pool);
      const old = keys.find((k) => k.kid === first.kid)!;
      expect(old.state).toBe('destroyed');
      expect(old.destroyed_at).toBeInstanceOf(Date);
      expect(old.public_jwk).toMatchObject({ kty: 'EC', crv: 'P-256' }); // the record outlives the key
      await checkInvariants(pool, hsm, { settled: true });
      expect(crashed, 'the injected crash happened').toBe(1);

      // Exactly one key was generated despite the crash, and every event of both keys was audited once.
      const enc = keys.filter((k) => k.use === 'enc');
      expect(enc.map((k) => k.state).sort()).toEqual(['active', 'destroyed']);
      const { rows } = await pool.query<{ type: string; n: number }>(
        `SELECT type, count(*)::int AS n FROM audit_log WHERE type LIKE 'key.%' AND (entry LIKE $1 OR entry LIKE $2) GROUP BY type ORDER BY type`,
        [`%${first.kid}%`, `%${next.kid}%`],
      );
      expect(Object.fromEntries(rows.map((r) => [r.type, r.n]))).toEqual({
        'key.activated': 2, // the bootstrap's first key and its successor
        'key.deactivated': 1,
        'key.destroyed': 1,
        'key.generated': 2,
        'key.published': 2,
      });
    });
  }

  it('a keygen whose row never reached the database is adopted by label, not left as an orphan', async () => {
    const pool = createPool(await createTestDatabase(), quiet, 5);
    const token = createTestToken();
    const hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 2 });
    closers.push(
      () => hsm.close(),
      () => pool.end(),
    );
    await ensureGatewayKeys(pool, hsm);
    const crash: StepDeps = {
      pool,
      hsm,
      actor: { type: 'gateway', id: 'test' },
      hook: (p) => {
        if (p === 'generate:hsm-generated') throw new Crash(p);
      },
    };
    await expect(rotateUse(crash, 'sig', policy, { request: { now: true } })).rejects.toBeInstanceOf(Crash);
    const [intent] = await listIntents(pool, 'sig');
    const orphan = (await hsm.listKeys()).filter((k) => k.label === intent!.label);
    expect(orphan).toHaveLength(1);
    // The rerun (a plain scheduled run) finishes the --now rotation with the very key already on the token.
    const run = await rotateUse({ pool, hsm, actor: { type: 'gateway', id: 'test' } }, 'sig', policy);
    expect(run.steps[0]).toMatchObject({ kind: 'generate', activate: true, resume: intent!.label });
    const active = (await listKeys(pool)).find((k) => k.use === 'sig' && k.state === 'active')!;
    expect(active.hsm_id).toBe(orphan[0]!.id);
    await checkInvariants(pool, hsm, { settled: true });
  });

  it('the blinding secret key made before a crash is adopted by label too, its kid its check value', async () => {
    const pool = createPool(await createTestDatabase(), quiet, 5);
    const token = createTestToken();
    const hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 2 });
    closers.push(
      () => hsm.close(),
      () => pool.end(),
    );
    await ensureGatewayKeys(pool, hsm);
    const blindingPolicy = { rotationMs: policy.rotationMs, prepublishMs: 0, retentionMs: Number.POSITIVE_INFINITY };
    const crash: StepDeps = {
      pool,
      hsm,
      actor: { type: 'gateway', id: 'test' },
      hook: (p) => {
        if (p === 'generate:hsm-generated') throw new Crash(p);
      },
    };
    await expect(rotateUse(crash, 'blinding', blindingPolicy, { request: { now: true } })).rejects.toBeInstanceOf(
      Crash,
    );
    const [intent] = await listIntents(pool, 'blinding');
    const orphan = (await hsm.listSecretKeys()).filter((k) => k.label === intent!.label);
    expect(orphan).toHaveLength(1);
    expect(orphan[0]).toMatchObject({ sensitive: true, extractable: false, neverExtractable: true });
    await rotateUse({ pool, hsm, actor: { type: 'gateway', id: 'test' } }, 'blinding', blindingPolicy);
    const keys = (await listKeys(pool)).filter((k) => k.use === 'blinding');
    const active = keys.find((k) => k.state === 'active')!;
    expect(active.hsm_id).toBe(orphan[0]!.id);
    expect(active.kid).toBe(await blindingKid(hsm, active.hsm_id));
    expect(active.public_jwk).toEqual({ kty: 'oct' });
    expect(keys.map((k) => k.state).sort()).toEqual(['active', 'deactivated']);
    await checkInvariants(pool, hsm, { settled: true });
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { claimsFor, publishedEncKey, seal, signContent, softPartner, type SoftPartner } from '../helpers/envelopes.ts';
import { rotateUse, rotationPolicies } from '../../src/keys/rotation.ts';
import { unacknowledgedSealedTo } from '../../src/inbound/inbox-store.ts';

/**
 * Envelopes sealed to our previous encryption key (senders' cached JWKS,
 * retried deliveries) still open after a rotation; once that key is
 * destroyed they are refused as an unknown kid.
 */
describe('POST /inbox across an encryption key rotation', () => {
  let gw: TestGateway;
  let partner: SoftPartner;
  const bundle = { resourceType: 'Bundle', type: 'collection' };
  const post = async (envelope: string) =>
    fetch(`${gw.url}/inbox`, { method: 'POST', headers: { 'content-type': 'application/jose' }, body: envelope });

  beforeAll(async () => {
    gw = await startTestGateway();
    partner = await softPartner('https://partner-rot.test');
    await gw.app.ctx.directory.add({ id: partner.id, endpoint: 'https://partner-rot.test/inbox', jwks: partner.jwks });
  });
  afterAll(async () => gw?.close());

  it('opens with the deactivated key until it is destroyed, then refuses JWE_UNKNOWN_KID', async () => {
    const ctx = gw.app.ctx;
    const old = await publishedEncKey(gw.url);
    const deps = { pool: ctx.pool, hsm: ctx.hsm, actor: { type: 'admin' as const, id: 'test' } };
    const policy = rotationPolicies(ctx.config).enc;
    await rotateUse(deps, 'enc', policy, { request: { now: true }, wait: true });
    await ctx.keyring.reload();
    const active = ctx.keyring.active('enc');
    const fresh = { ...active.public_jwk, kid: active.kid } as typeof old;
    expect(fresh.kid).not.toBe(old.kid);
    expect(ctx.keyring.rows().find((k) => k.kid === old.kid)?.state).toBe('deactivated');

    // A sender still using the old key (a cached JWKS, or an envelope sealed before the switch).
    const viaOld = seal(old, await signContent(partner, claimsFor(partner, gw.config.org, bundle)));
    expect((await post(viaOld)).status).toBe(200);
    expect(
      (await post(seal(fresh, await signContent(partner, claimsFor(partner, gw.config.org, bundle))))).status,
    ).toBe(200);
    expect(await unacknowledgedSealedTo(ctx.pool, old.kid)).toBeGreaterThanOrEqual(1);

    // Past the retention, the scheduler destroys the old key in the HSM.
    const later = new Date(Date.now() + policy.retentionMs + 60_000);
    const run = await rotateUse({ ...deps, clock: () => later }, 'enc', policy, { wait: true });
    expect(run.steps.map((s) => s.kind)).toContain('destroy');
    // This process's keyring still lists the key as deactivated: the HSM's answer decides.
    expect(ctx.keyring.decryptionKey(old.kid)).toBeDefined();
    const res = await post(seal(old, await signContent(partner, claimsFor(partner, gw.config.org, bundle))));
    expect(res.status).toBe(400);
    expect(
      ((await res.json()) as { issue: Array<{ details: { coding: Array<{ code: string }> } }> }).issue[0]!.details
        .coding[0]!.code,
    ).toBe('JWE_UNKNOWN_KID');
  });
});

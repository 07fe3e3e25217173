import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient } from '../helpers/auth.ts';
import { claimsFor, publishedEncKey, seal, signContent, softPartner } from '../helpers/envelopes.ts';
import { SCOPE_ADMIN, SCOPE_ALL_READ, SCOPE_ALL_WRITE } from '../../src/auth/scopes.ts';
import { runKeysRotate } from '../../src/worker/tasks/keys.ts';
import { listKeys } from '../../src/keys/store.ts';

/** Stored inbox messages are sealed to our enc key: the scheduler keeps it until the local EHR has acknowledged them. */
describe('a retired encryption key is not destroyed while inbox messages sealed to it await the EHR', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(async () => gw?.close());

  it('holds the destruction, shows why, and destroys once every message is acknowledged', async () => {
    const ctx = gw.app.ctx;
    const partner = await softPartner('https://partner-hold.test');
    await ctx.directory.add({ id: partner.id, endpoint: 'https://partner-hold.test/inbox', jwks: partner.jwks });
    const old = await publishedEncKey(gw.url);
    const res = await fetch(`${gw.url}/inbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/jose' },
      body: seal(
        old,
        await signContent(partner, claimsFor(partner, gw.config.org, { resourceType: 'Bundle', type: 'collection' })),
      ),
    });
    expect(res.status).toBe(200);

    await runKeysRotate(ctx, { use: 'enc', now: true, requestedBy: 'test' });
    const retention = gw.config.deliveryHorizon + gw.config.keyRetentionMargin;
    const later = new Date(Date.now() + retention + 60_000);
    await runKeysRotate(ctx, {}, { clock: () => later });
    expect((await listKeys(ctx.pool)).find((k) => k.kid === old.kid)!.state).toBe('deactivated');
    const admin = await testClient(gw, { scopes: [SCOPE_ADMIN] });
    const view = await request(gw.app.server)
      .get('/admin/keys')
      .set('authorization', await admin.bearer())
      .expect(200);
    expect(view.body.keys.find((k: { kid: string }) => k.kid === old.kid).destroy_held).toMatch(
      /1 unacknowledged inbox messages/,
    );

    const ehr = await testClient(gw, { scopes: [SCOPE_ALL_READ, SCOPE_ALL_WRITE], receivesFrom: ['*'] });
    const auth = await ehr.bearer();
    const list = await request(gw.app.server).get('/inbox/messages').set('authorization', auth).expect(200);
    for (const m of list.body.messages)
      await request(gw.app.server).post(`/inbox/messages/${m.id}/$ack`).set('authorization', auth).expect(200);

    const run = await runKeysRotate(ctx, {}, { clock: () => later });
    expect(run.flatMap((r) => r.steps)).toEqual([{ kind: 'destroy', use: 'enc', kid: old.kid }]);
    const key = (await listKeys(ctx.pool)).find((k) => k.kid === old.kid)!;
    expect(key.state).toBe('destroyed');
    expect(await ctx.hsm.hasKey(key.hsm_id)).toBe(false);
  });
});

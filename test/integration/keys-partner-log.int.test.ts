import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient } from '../helpers/auth.ts';
import { SCOPE_ADMIN } from '../../src/auth/scopes.ts';
import { refreshPartnerKeys } from '../../src/directory/partner-refresh.ts';
import { partnerKeyLog, recordedPartnerKey } from '../../src/directory/partner-key-log.ts';

async function ecKey(use: 'sig' | 'enc', kid?: string): Promise<JWK> {
  const { publicKey } = await generateKeyPair(use === 'sig' ? 'ES256' : 'ECDH-ES', { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { ...jwk, kid: kid ?? (await calculateJwkThumbprint(jwk)), use, alg: use === 'sig' ? 'ES256' : 'ECDH-ES' };
}

describe('partner keys: scheduled JWKS refresh and the key-transparency log', () => {
  let gw: TestGateway;
  let server: Server;
  let published: { keys: JWK[] } = { keys: [] };
  let status = 200;
  let jwksUri = '';
  const partnerId = 'https://partner-kt.test';
  const audit = async (type: string) =>
    (await gw.app.ctx.pool.query(`SELECT entry FROM audit_log WHERE type = $1 ORDER BY idx`, [type])).rows.map((r) =>
      JSON.parse(r.entry),
    );

  beforeAll(async () => {
    server = createServer((_req, res) => {
      res
        .writeHead(status, { 'content-type': 'application/jwk-set+json', 'cache-control': 'max-age=3600' })
        .end(status === 200 ? JSON.stringify(published) : '');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    jwksUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
    gw = await startTestGateway({ PARTNER_JWKS_REFRESH: '1h' });
  });
  afterAll(async () => {
    await gw?.close();
    server?.close();
  });

  it('records first-seen keys, then audits a changed kid and a disappeared key; history keeps old keys verifiable', async () => {
    const ctx = gw.app.ctx;
    const sig1 = await ecKey('sig');
    const enc1 = await ecKey('enc');
    published = { keys: [enc1, sig1] };
    await ctx.directory.add({ id: partnerId, endpoint: 'https://partner-kt.test/inbox', jwksUri });
    const t0 = new Date();
    let [r] = await refreshPartnerKeys(ctx, { now: t0 });
    expect(r).toMatchObject({
      partner: partnerId,
      ok: true,
      observed: { firstSeen: [enc1.kid, sig1.kid], changed: [], disappeared: [] },
    });
    expect((await audit('partner-key.first-seen')).map((e) => e.entity[0].id)).toEqual([enc1.kid, sig1.kid]);

    // Within PARTNER_JWKS_REFRESH nothing is refetched; forced, the same keys only advance last_seen.
    expect(await refreshPartnerKeys(ctx, { now: new Date(t0.getTime() + 1_000) })).toEqual([]);
    [r] = await refreshPartnerKeys(ctx, { force: true, now: new Date(t0.getTime() + 2_000) });
    expect(r!.observed).toEqual({ firstSeen: [], changed: [], disappeared: [] });
    let log = await partnerKeyLog(ctx.pool, partnerId);
    expect(log.find((k) => k.kid === sig1.kid)).toMatchObject({
      first_seen: t0,
      last_seen: new Date(t0.getTime() + 2_000),
      disappeared_at: null,
    });

    // The partner rotates: sig1 disappears, a new sig key appears, and the enc kid now carries other content.
    const sig2 = await ecKey('sig');
    const enc1b = await ecKey('enc', enc1.kid);
    published = { keys: [enc1b, sig2] };
    [r] = await refreshPartnerKeys(ctx, { force: true, now: new Date(t0.getTime() + 3_000) });
    expect(r!.observed).toEqual({ firstSeen: [sig2.kid], changed: [enc1.kid], disappeared: [sig1.kid] });
    const [changed] = await audit('partner-key.changed');
    expect(changed).toMatchObject({
      outcome: 'minor-failure',
      agent: { type: 'partner', id: partnerId },
      entity: [{ type: 'partner-key', id: enc1.kid }],
    });
    expect((await audit('partner-key.disappeared')).map((e) => e.entity[0].id)).toEqual([sig1.kid]);
    log = await partnerKeyLog(ctx.pool, partnerId);
    expect(log.find((k) => k.kid === sig1.kid)!.disappeared_at).toEqual(new Date(t0.getTime() + 3_000));
    expect(log.filter((k) => k.kid === enc1.kid)).toHaveLength(2);

    // A receipt signed by the retired sig1 still finds its key: from the log, and through the directory.
    expect(await recordedPartnerKey(ctx.pool, partnerId, sig1.kid!)).toMatchObject({ x: sig1.x, y: sig1.y });
    expect(await ctx.directory.verificationKey(partnerId, sig1.kid!, { signedAt: t0 })).toMatchObject({
      x: sig1.x,
      y: sig1.y,
    });
    // Not for content signed after the withdrawal, nor for new content, which needs a key listed now.
    await expect(
      ctx.directory.verificationKey(partnerId, sig1.kid!, { signedAt: new Date(t0.getTime() + 4_000) }),
    ).rejects.toMatchObject({ code: 'JWS_KEY_WITHDRAWN', status: 400 });
    await expect(ctx.directory.verificationKey(partnerId, sig1.kid!, 'current')).rejects.toMatchObject({
      code: 'JWS_KEY_WITHDRAWN',
    });
    expect((await ctx.directory.verificationKey(partnerId, sig2.kid!, 'current')).x).toBe(sig2.x);
    // ...but not once it has been gone longer than the window the live path allows.
    expect(await recordedPartnerKey(ctx.pool, partnerId, sig1.kid!, new Date(t0.getTime() + 4_000))).toBeUndefined();
    // A kid whose content changed is ambiguous and never answered from history; unknown kids are refused.
    expect(await recordedPartnerKey(ctx.pool, partnerId, enc1.kid!)).toBeUndefined();
    await expect(ctx.directory.verificationKey(partnerId, 'never-published', 'current')).rejects.toMatchObject({
      code: 'FORBIDDEN',
    });

    // A key that comes back is no longer marked disappeared.
    published = { keys: [enc1b, sig2, sig1] };
    [r] = await refreshPartnerKeys(ctx, { force: true, now: new Date(t0.getTime() + 5_000) });
    expect(r!.observed!.disappeared).toEqual([]);
    expect((await partnerKeyLog(ctx.pool, partnerId)).find((k) => k.kid === sig1.kid)!.disappeared_at).toBeNull();
  });

  it('records a failed refresh without touching the log or the cached keys', async () => {
    const ctx = gw.app.ctx;
    const before = await partnerKeyLog(ctx.pool, partnerId);
    status = 503;
    try {
      const [r] = await refreshPartnerKeys(ctx, { force: true });
      expect(r).toMatchObject({ partner: partnerId, ok: false });
      expect(r!.error).toMatch(/could not be refreshed|HTTP 503/);
      const check = await ctx.pool.query('SELECT ok, error FROM partner_jwks_checks WHERE partner_id = $1', [
        partnerId,
      ]);
      expect(check.rows[0].ok).toBe(false);
      expect(await partnerKeyLog(ctx.pool, partnerId)).toEqual(before);
      // Deliveries keep sealing to the cached key.
      expect((await ctx.directory.encryptionKey(partnerId)).kid).toBe(published.keys[0]!.kid);
    } finally {
      status = 200;
    }
  });

  it('GET /admin/partner-keys shows the log to administrators', async () => {
    const admin = await testClient(gw, { scopes: [SCOPE_ADMIN] });
    await request(gw.app.server).get('/admin/partner-keys').expect(401);
    const res = await request(gw.app.server)
      .get('/admin/partner-keys')
      .set('authorization', await admin.bearer())
      .expect(200);
    expect(res.body.keys.length).toBe(4);
    expect(res.body.keys[0]).toMatchObject({
      partner: partnerId,
      first_seen: expect.any(String),
      last_seen: expect.any(String),
    });
    expect(res.body.keys.filter((k: { replaced: string | null }) => k.replaced)).toHaveLength(1);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { importJWK, type JWK } from 'jose';
import { startTwoGateways, type Peer, type TwoGateways } from '../helpers/two-gateways.ts';
import { waitFor } from '../helpers/outbound.ts';
import { verifyReceipt } from '../../src/protocol/receipt.ts';
import { signingKidOf } from '../../src/directory/signing-keys.ts';
import { runKeysRotate } from '../../src/worker/tasks/keys.ts';
import { refreshPartnerKeys } from '../../src/directory/partner-refresh.ts';
import { recordedPartnerKey } from '../../src/directory/partner-key-log.ts';
import { listKeys } from '../../src/keys/store.ts';

/**
 * Rotation shortened to seconds. The cron runs keys_rotate and
 * partner_keys_refresh once a minute; here the same functions are ticked
 * every 300 ms so several cryptoperiods fit in a test. The unknown-kid
 * refresh cooldown is an hour, so a peer learns a new signing key only from
 * the scheduled refresh: KEY_PREPUBLISH (3 s) > PARTNER_JWKS_REFRESH (1 s)
 * is what keeps verification working, as in production (2 d > JWKS_MAX_AGE).
 */
const ENV = {
  KEY_SIG_ROTATION: '6s',
  KEY_ENC_ROTATION: '5s',
  KEY_AUDIT_ROTATION: '7s',
  KEY_PREPUBLISH: '3s',
  JWKS_MAX_AGE: '1s',
  PARTNER_JWKS_REFRESH: '1s',
  JWKS_REFRESH_COOLDOWN: '1h',
  DELIVERY_HORIZON: '5s',
  KEY_RETENTION_MARGIN: '5s',
};
const RUN_MS = 26_000;

const bundle = () =>
  JSON.stringify({
    resourceType: 'Bundle',
    type: 'collection',
    entry: [
      { fullUrl: `urn:uuid:${randomUUID()}`, resource: { resourceType: 'Basic', id: 'b1', code: { text: 'note' } } },
    ],
  });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('key rotation end to end: two gateways exchange continuously through several rotations on both sides', () => {
  let t: TwoGateways;
  beforeAll(async () => {
    t = await startTwoGateways(ENV);
  });
  afterAll(async () => t?.close());

  it(
    '0 failed deliveries, 0 failed verifications, and receipts by retired keys still verify',
    { timeout: 180_000 },
    async () => {
      const { a, b } = t;
      let stop = false;
      const tick = async (p: Peer) => {
        while (!stop) {
          await runKeysRotate(p.gw.app.ctx, {});
          await refreshPartnerKeys(p.gw.app.ctx);
          await sleep(300);
        }
      };
      const sent: Array<{ from: Peer; id: string }> = [];
      const send = async (from: Peer, to: Peer) => {
        const auth = await from.ehr.bearer();
        while (!stop) {
          const res = await request(from.gw.app.server)
            .post(`/exchanges?recipient=${encodeURIComponent(to.gw.config.org)}`)
            .set('authorization', auth)
            .type('application/fhir+json')
            .send(bundle());
          expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(202);
          sent.push({ from, id: (res.headers['content-location'] as string).split('/').pop()! });
          await sleep(200);
        }
      };
      // Each local EHR pulls and acknowledges its inbox: stored envelopes are sealed to the enc key, which is
      // destroyed only once nothing unacknowledged depends on it.
      const ack = async (p: Peer) => {
        const auth = await p.ehr.bearer();
        while (!stop) {
          const list = await request(p.gw.app.server)
            .get('/inbox/messages?state=received&_count=1000')
            .set('authorization', auth)
            .expect(200);
          for (const m of list.body.messages)
            await request(p.gw.app.server).post(`/inbox/messages/${m.id}/$ack`).set('authorization', auth).expect(200);
          await sleep(400);
        }
      };
      const loops = [tick(a), tick(b), send(a, b), send(b, a), ack(a), ack(b)];
      await sleep(RUN_MS);
      stop = true;
      await Promise.all(loops);

      // Every exchange delivered at the first attempt: no refused envelope, no unverifiable signature or receipt.
      for (const s of sent) {
        await waitFor(
          `exchange ${s.id}`,
          async () => {
            const { rows } = await s.from.gw.app.ctx.pool.query(`SELECT state FROM deliveries WHERE exchange_id = $1`, [
              s.id,
            ]);
            return rows.length && rows.every((r) => r.state !== 'pending') ? true : undefined;
          },
          30_000,
          100,
        );
      }
      expect(sent.length).toBeGreaterThan(60);
      for (const p of [a, b]) {
        const { rows } = await p.gw.app.ctx.pool.query(
          `SELECT state, count(*)::int AS n FROM deliveries GROUP BY state`,
        );
        expect(rows, `${p.gw.config.org} deliveries`).toEqual([
          { state: 'delivered', n: sent.filter((s) => s.from === p).length },
        ]);
        const bad = await p.gw.app.ctx.pool.query(
          `SELECT outcome, error FROM delivery_attempts WHERE outcome <> 'delivered'`,
        );
        expect(bad.rows, 'failed attempts').toEqual([]);
        const refused = await p.gw.app.ctx.pool.query(`SELECT entry FROM audit_log WHERE type = 'inbox.refused'`);
        expect(refused.rows, 'refused envelopes').toEqual([]);
      }

      // Several rotations of both signing and encryption keys on both sides, with retired keys destroyed on schedule.
      for (const p of [a, b]) {
        const keys = await listKeys(p.gw.app.ctx.pool);
        for (const use of ['sig', 'enc'] as const) {
          const mine = keys.filter((k) => k.use === use);
          expect(mine.filter((k) => k.activated_at).length, `${use} keys activated`).toBeGreaterThanOrEqual(4);
          expect(mine.filter((k) => k.state === 'active')).toHaveLength(1);
          expect(mine.filter((k) => k.state === 'destroyed').length, `${use} keys destroyed`).toBeGreaterThanOrEqual(1);
          // Published before use: each successor was in the JWKS at least KEY_PREPUBLISH before activation.
          for (const k of mine.filter(
            (x) => x.activated_at && x.published_at && x.activated_at.getTime() - x.created_at.getTime() > 1_000,
          )) {
            expect(k.activated_at!.getTime() - k.published_at!.getTime()).toBeGreaterThanOrEqual(3_000);
          }
        }
        // Envelopes really went to many different encryption keys of the peer.
        const kids = await p.gw.app.ctx.pool.query(`SELECT count(DISTINCT recipient_kid)::int AS n FROM deliveries`);
        expect(kids.rows[0].n).toBeGreaterThanOrEqual(3);
      }

      // Receipts signed by B with keys B has since retired (destroyed, gone from its JWKS) still verify at A,
      // from A's key-transparency log.
      const bJwks = (await (await fetch(`${b.gw.url}/.well-known/jwks.json`)).json()) as {
        keys: Array<JWK & { kid: string }>;
      };
      const live = new Set(bJwks.keys.map((k) => k.kid));
      const { rows: receipts } = await a.gw.app.ctx.pool.query(
        `SELECT id, partner_id, envelope_digest, receipt FROM deliveries`,
      );
      let retired = 0;
      for (const r of receipts) {
        const kid = signingKidOf(r.receipt)!;
        if (!live.has(kid)) retired++;
        const claims = await verifyReceipt(
          r.receipt,
          async (h) => {
            const jwk = await recordedPartnerKey(a.gw.app.ctx.pool, r.partner_id, h.kid!);
            if (!jwk) throw new Error(`kid ${h.kid} not in the key-transparency log`);
            return importJWK(jwk as JWK, h.alg);
          },
          { iss: b.gw.config.org, aud: a.gw.config.org, delivery: r.id, digest: r.envelope_digest },
        );
        expect(claims.status).toBe('accepted');
        // The directory too: for a receipt it falls back to the log for kids the partner withdrew after signing.
        await a.gw.app.ctx.directory.verificationKey(r.partner_id, kid, { signedAt: new Date(claims.iat * 1000) });
      }
      expect(retired, 'receipts signed by keys B has retired').toBeGreaterThan(0);

      // Every key event is audited, and A saw B's keys come and go.
      const { rows: events } = await a.gw.app.ctx.pool.query(
        `SELECT type, count(*)::int AS n FROM audit_log WHERE type LIKE 'key.%' OR type LIKE 'partner-key.%' GROUP BY type`,
      );
      const count = Object.fromEntries(events.map((e) => [e.type, e.n]));
      expect(count['key.generated']).toBe(count['key.published']);
      expect(count['key.activated']).toBeGreaterThanOrEqual(8);
      expect(count['key.deactivated']).toBeGreaterThanOrEqual(5);
      expect(count['key.destroyed']).toBeGreaterThanOrEqual(2);
      expect(count['partner-key.first-seen']).toBeGreaterThanOrEqual(8);
      expect(count['partner-key.disappeared']).toBeGreaterThanOrEqual(2);
    },
  );
});

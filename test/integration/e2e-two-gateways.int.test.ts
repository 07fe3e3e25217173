import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { importJWK, type JWK } from 'jose';
import { startTwoGateways, type TwoGateways } from '../helpers/two-gateways.ts';
import { waitFor } from '../helpers/outbound.ts';
import { verifyReceipt } from '../../src/protocol/receipt.ts';

/**
 * Two gateways end to end: A's EHR sends every Synthea fixture bundle to B;
 * A delivers (sign in A's HSM, seal to B's published key, POST to B's inbox);
 * B opens with its HSM key, verifies A's signature against A's JWKS and
 * answers with a signed receipt; B's EHR pulls each bundle. Both publish
 * post-quantum keys, so every delivery goes as protocol v2 (hybrid envelope,
 * ES256 + ML-DSA-65 signatures, dual-signed receipt).
 */
const SYNTHEA = join(import.meta.dirname, '../fixtures/synthea');
const files = readdirSync(SYNTHEA)
  .filter((f) => f.endsWith('.json'))
  .sort();

interface View {
  id: string;
  recipients: Array<{
    partner: string;
    delivery: string;
    state: string;
    envelope_digest: string;
    receipt: string | null;
    attempts: Array<{ outcome: string; http_status: number | null }>;
  }>;
}

describe('A sends every Synthea bundle to B; B hands each one to its EHR', () => {
  let t: TwoGateways;
  beforeAll(async () => {
    t = await startTwoGateways();
  });
  afterAll(async () => t?.close());

  it(
    `delivers all ${files.length} bundles byte for byte, each confirmed by B's verified receipt`,
    { timeout: 240_000 },
    async () => {
      expect(files.length).toBeGreaterThanOrEqual(18);
      const { a, b } = t;
      const bOrg = b.gw.config.org;
      const aAuth = await a.ehr.bearer();
      const sent = new Map<string, string>(); // exchange id -> bundle text as accepted by A
      for (const f of files) {
        const text = readFileSync(join(SYNTHEA, f), 'utf8');
        const res = await request(a.gw.app.server)
          .post(`/exchanges?recipient=${encodeURIComponent(bOrg)}`)
          .set('authorization', aAuth)
          .type('application/fhir+json')
          .send(text);
        expect(res.status, `${f}: ${JSON.stringify(res.body).slice(0, 300)}`).toBe(202);
        sent.set((res.headers['content-location'] as string).split('/').pop()!, text);
      }

      // A: every delivery delivered, with a receipt that verifies against B's published key.
      const bJwks = (await (await fetch(`${b.gw.url}/.well-known/jwks.json`)).json()) as {
        keys: Array<JWK & { kid: string }>;
      };
      const views: View[] = [];
      for (const id of sent.keys()) {
        const view = await waitFor(
          `exchange ${id} delivered`,
          async () => {
            const res = await request(a.gw.app.server)
              .get(`/exchanges/${id}`)
              .set('authorization', await a.ehr.bearer());
            return res.status === 200 && res.body.recipients.every((r: { state: string }) => r.state !== 'pending')
              ? (res.body as View)
              : undefined;
          },
          180_000,
          200,
        );
        expect(view.recipients).toHaveLength(1);
        const r = view.recipients[0]!;
        expect(r, `exchange ${id}: ${JSON.stringify(r.attempts)}`).toMatchObject({ partner: bOrg, state: 'delivered' });
        const claims = await verifyReceipt(
          r.receipt!,
          // Both signatures of a v2 receipt, each with its own key (ES256, ML-DSA-65) from B's set.
          async (h) =>
            importJWK(
              bJwks.keys.find((k) => k.kid === h.kid)!,
              h.alg,
            ),
          {
            iss: bOrg,
            aud: a.gw.config.org,
            delivery: r.delivery,
            digest: r.envelope_digest,
          },
        );
        expect(claims.status).toBe('accepted');
        // Protocol v2 (both publish post-quantum keys): the receipt carries ES256 and ML-DSA-65 signatures.
        expect((JSON.parse(r.receipt!) as { signatures: unknown[] }).signatures, 'a dual-signed receipt').toHaveLength(
          2,
        );
        views.push(view);
      }

      // B: one stored, still-sealed message per delivery; its EHR pulls each bundle exactly as A accepted it.
      const bAuth = await b.ehr.bearer();
      const list = await request(b.gw.app.server)
        .get(`/inbox/messages?state=received&sender=${encodeURIComponent(a.gw.config.org)}&_count=1000`)
        .set('authorization', bAuth)
        .expect(200);
      expect(list.body.messages).toHaveLength(files.length);
      for (const view of views) {
        const r = view.recipients[0]!;
        const meta = list.body.messages.find((m: { delivery: string }) => m.delivery === r.delivery);
        expect(meta).toMatchObject({
          sender: a.gw.config.org,
          exchange: view.id,
          digest: r.envelope_digest,
          state: 'received',
        });
        // Stored as it came: a hybrid envelope, with the ML-DSA key that verified A's second signature.
        const { rows: stored } = await b.gw.app.ctx.pool.query<{ envelope: string; pq: { alg?: string } | null }>(
          `SELECT (SELECT e.envelope FROM inbox_envelopes e WHERE e.message_id = m.id) AS envelope, (SELECT k.jwk FROM inbox_sender_pq_keys k WHERE k.thumbprint = m.sender_pq_key) AS pq
             FROM inbox_messages m WHERE id = $1`,
          [meta.id],
        );
        expect(JSON.parse(Buffer.from(stored[0]!.envelope.split('.')[0]!, 'base64url').toString()).alg).toBe(
          'x-ECDH-ES+ML-KEM-768',
        );
        expect(stored[0]!.pq?.alg).toBe('ML-DSA-65');
        const pulled = await request(b.gw.app.server)
          .get(`/inbox/messages/${meta.id}`)
          .set('authorization', bAuth)
          .buffer(true)
          .parse((res, cb) => {
            let data = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (data += c));
            res.on('end', () => cb(null, data));
          })
          .expect(200);
        expect(pulled.headers['content-type']).toMatch(/^application\/fhir\+json/);
        expect(pulled.body === sent.get(view.id), `bundle of exchange ${view.id} differs`).toBe(true);
        await request(b.gw.app.server).post(`/inbox/messages/${meta.id}/$ack`).set('authorization', bAuth).expect(200);
      }
      const acked = await request(b.gw.app.server)
        .get('/inbox/messages?state=acknowledged&_count=1000')
        .set('authorization', bAuth)
        .expect(200);
      expect(acked.body.messages).toHaveLength(files.length);

      // No plaintext at rest on B: a patient name from the first bundle appears in no row.
      const firstBundle = JSON.parse(sent.values().next().value!) as {
        entry: Array<{ resource: { resourceType: string; name?: Array<{ family?: string }> } }>;
      };
      const family = firstBundle.entry.find((e) => e.resource.resourceType === 'Patient')!.resource.name![0]!.family!;
      const dump = await b.gw.app.ctx.pool.query(
        `SELECT (SELECT coalesce(json_agg(m)::text, '') FROM inbox_messages m) || (SELECT coalesce(json_agg(a)::text, '') FROM audit_log a) AS t`,
      );
      expect(family.length).toBeGreaterThan(2);
      expect(dump.rows[0].t).not.toContain(family);
    },
  );

  it("works the other way too: B sends a message bundle to A, A's EHR pulls it", { timeout: 60_000 }, async () => {
    const { a, b } = t;
    const text = readFileSync(join(SYNTHEA, files[0]!), 'utf8');
    const res = await request(b.gw.app.server)
      .post(`/exchanges?recipient=${encodeURIComponent(a.gw.config.org)}`)
      .set('authorization', await b.ehr.bearer())
      .type('application/fhir+json')
      .send(text)
      .expect(202);
    const id = (res.headers['content-location'] as string).split('/').pop()!;
    const view = await waitFor(
      'B to A delivered',
      async () => {
        const r = await request(b.gw.app.server)
          .get(`/exchanges/${id}`)
          .set('authorization', await b.ehr.bearer());
        return r.body.recipients?.[0]?.state === 'delivered' ? (r.body as View) : undefined;
      },
      50_000,
      200,
    );
    const aAuth = await a.ehr.bearer();
    const list = await request(a.gw.app.server)
      .get(`/inbox/messages?sender=${encodeURIComponent(b.gw.config.org)}`)
      .set('authorization', aAuth)
      .expect(200);
    const meta = list.body.messages.find((m: { delivery: string }) => m.delivery === view.recipients[0]!.delivery);
    const pulled = await request(a.gw.app.server)
      .get(`/inbox/messages/${meta.id}`)
      .set('authorization', aAuth)
      .buffer(true)
      .parse((r, cb) => {
        let data = '';
        r.setEncoding('utf8');
        r.on('data', (c: string) => (data += c));
        r.on('end', () => cb(null, data));
      })
      .expect(200);
    expect(pulled.body === text).toBe(true);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { startTwoGateways, type TwoGateways } from '../helpers/two-gateways.ts';
import { waitFor } from '../helpers/outbound.ts';

/**
 * Two gateways with PROTOCOL_V2=on: each publishes its post-quantum keys, so
 * A sends B protocol v2 (hybrid envelope, dual JWS), B answers with a
 * dual-signed receipt that A requires, and B's EHR pulls the bundle.
 */
const SYNTHEA = join(import.meta.dirname, '../fixtures/synthea');
const first = readdirSync(SYNTHEA)
  .filter((f) => f.endsWith('.json'))
  .sort()[0]!;

const headerOf = (compact: string) =>
  JSON.parse(Buffer.from(compact.split('.')[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;

describe('protocol v2 end to end between two gateways', () => {
  let t: TwoGateways;
  beforeAll(async () => {
    t = await startTwoGateways({ PROTOCOL_V2: 'on' });
  });
  afterAll(async () => t?.close());

  it(
    "A sends B a v2 message; B's receipt is dual-signed and A accepts it; B's EHR pulls the bundle byte for byte",
    { timeout: 90_000 },
    async () => {
      const { a, b } = t;
      const text = readFileSync(join(SYNTHEA, first), 'utf8');
      const res = await request(a.gw.app.server)
        .post(`/exchanges?recipient=${encodeURIComponent(b.gw.config.org)}`)
        .set('authorization', await a.ehr.bearer())
        .type('application/fhir+json')
        .send(text)
        .expect(202);
      const id = (res.headers['content-location'] as string).split('/').pop()!;
      const view = await waitFor(
        'A to B delivered',
        async () => {
          const r = await request(a.gw.app.server)
            .get(`/exchanges/${id}`)
            .set('authorization', await a.ehr.bearer());
          const state = r.body.recipients?.[0]?.state;
          if (state === 'failed') throw new Error(`failed: ${JSON.stringify(r.body.recipients[0].attempts)}`);
          return state === 'delivered' ? r.body : undefined;
        },
        60_000,
        200,
      );
      const recipient = view.recipients[0] as { delivery: string; receipt: string };
      expect(recipient.receipt.startsWith('{')).toBe(true);
      expect(JSON.parse(recipient.receipt).signatures).toHaveLength(2);

      const { rows } = await b.gw.app.ctx.pool.query(
        'SELECT id, envelope, receipt, (SELECT k.jwk FROM inbox_sender_pq_keys k WHERE k.thumbprint = m.sender_pq_key) AS sender_pq_jwk FROM inbox_messages m WHERE jti = $1',
        [recipient.delivery],
      );
      expect(rows).toHaveLength(1);
      expect(headerOf(rows[0].envelope).alg).toBe('x-ECDH-ES+ML-KEM-768');
      expect(rows[0].receipt).toBe(recipient.receipt);
      expect(rows[0].sender_pq_jwk).toMatchObject({ kty: 'AKP', alg: 'ML-DSA-65' });

      const pulled = await request(b.gw.app.server)
        .get(`/inbox/messages/${rows[0].id}`)
        .set('authorization', await b.ehr.bearer())
        .buffer(true)
        .parse((r, cb) => {
          let data = '';
          r.setEncoding('utf8');
          r.on('data', (c: string) => (data += c));
          r.on('end', () => cb(null, data));
        })
        .expect(200);
      expect(pulled.body === text).toBe(true);
    },
  );
});

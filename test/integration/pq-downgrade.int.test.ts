import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { startTwoGateways, type TwoGateways } from '../helpers/two-gateways.ts';
import { messageBundle, waitFor } from '../helpers/outbound.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { refreshPartnerKeys } from '../../src/directory/partner-refresh.ts';
import { unpackCompactJwe } from '../../src/jose/packed-jwe.ts';
import { envelopeVersion } from '../../src/protocol/v2-negotiation.ts';
import { isJsonJws } from '../../src/jose/pq/dual-jws.ts';
import { addAuditUser } from '../../src/audit/users.ts';

/**
 * Protocol v2 negotiation between two gateways, and what happens when the
 * receiving one stops publishing its post-quantum keys: nothing goes as v1
 * until an operator (or PQ_DOWNGRADE=allow-v1) says so, and v2 resumes when
 * the keys return.
 */
interface Delivery {
  id: string;
  state: string;
  envelope: Buffer;
  receipt: string | null;
  attempts: number;
}

describe('protocol v2 negotiation and downgrade between two gateways', () => {
  let t: TwoGateways;
  beforeAll(async () => {
    t = await startTwoGateways({ PROTOCOL_V2: 'on' });
  });
  afterAll(async () => t?.close());

  const send = async (): Promise<string> => {
    const res = await request(t.a.gw.app.server)
      .post(`/exchanges?recipient=${encodeURIComponent(t.b.gw.config.org)}`)
      .set('authorization', await t.a.ehr.bearer())
      .type('application/fhir+json')
      .send(messageBundle([t.b.gw.config.org]));
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return (res.headers['content-location'] as string).split('/').pop()!;
  };
  const delivery = async (exchange: string): Promise<Delivery> => {
    const { rows } = await t.a.gw.app.ctx.pool.query<Delivery>(
      `SELECT d.id, d.state, (SELECT e.envelope FROM delivery_envelopes e WHERE e.delivery_id = d.id) AS envelope, d.receipt,
              (SELECT count(*)::int FROM delivery_attempts a WHERE a.delivery_id = d.id) AS attempts
         FROM deliveries d WHERE d.exchange_id = $1`,
      [exchange],
    );
    expect(rows).toHaveLength(1);
    return rows[0]!;
  };
  const delivered = (exchange: string) =>
    waitFor(
      `exchange ${exchange} delivered`,
      async () => {
        const d = await delivery(exchange);
        return d.state === 'delivered' ? d : undefined;
      },
      60_000,
      100,
    );
  const version = (d: Delivery) => envelopeVersion(unpackCompactJwe(d.envelope));
  /** B stops (or starts again) publishing its post-quantum keys, and A reads B's JWKS again. */
  const bPublishesPq = async (on: boolean) => {
    (t.b.gw.config as { protocolV2: string }).protocolV2 = on ? 'on' : 'off';
    const refreshed = await refreshPartnerKeys(t.a.gw.app.ctx, { force: true });
    expect(refreshed.every((r) => r.ok)).toBe(true);
  };
  const audit = async (type: string) =>
    (
      await t.a.gw.app.ctx.pool.query<{ detail: Record<string, unknown> | null; agent_type: string }>(
        "SELECT entry::jsonb->'detail' AS detail, entry::jsonb->'agent'->>'type' AS agent_type FROM audit_log WHERE type = $1 ORDER BY idx",
        [type],
      )
    ).rows;
  const partnerState = async () =>
    (
      await t.a.gw.app.ctx.pool.query<{ pq_downgrade: string | null }>(
        'SELECT pq_downgrade FROM partners WHERE id = $1',
        [t.b.gw.config.org],
      )
    ).rows[0]!.pq_downgrade;

  it('sends v2 to a partner that publishes both post-quantum keys, and gets a dual-signed receipt', async () => {
    const d = await delivered(await send());
    expect(version(d)).toBe(2);
    expect(isJsonJws(d.receipt!)).toBe(true);
    expect((JSON.parse(d.receipt!) as { signatures: unknown[] }).signatures).toHaveLength(2);
  });

  it(
    'holds v1 deliveries once the partner drops its post-quantum keys, until an operator allows v1 (CLI, audited)',
    { timeout: 120_000 },
    async () => {
      await bPublishesPq(false);
      const exchange = await send();
      // Sealed as v1 (the only keys B now publishes) and stored, but not sent: no attempt is made.
      const held = await delivery(exchange);
      expect(version(held)).toBe(1);
      expect(await partnerState()).toBe('held');
      expect(await audit('partner.downgrade-detected')).toHaveLength(1);
      await new Promise((r) => setTimeout(r, 1_500));
      expect(await delivery(exchange)).toMatchObject({ state: 'pending', attempts: 0 });

      // Bad arguments: usage error, nothing decided.
      const env = cleanEnv({ DATABASE_URL: t.a.gw.databaseUrl });
      const bad = await runCli(['deliveries', 'downgrade', t.b.gw.config.org, 'maybe'], env);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/allow-v1 or hold/);
      const unknown = await runCli(['deliveries', 'downgrade', 'nobody.example', 'allow-v1'], env);
      expect(unknown.code).not.toBe(0);
      expect(unknown.stderr).toMatch(/no partner/);
      expect(await partnerState()).toBe('held');

      const allow = await runCli(['deliveries', 'downgrade', t.b.gw.config.org, 'allow-v1'], env);
      expect(allow.code, allow.stderr).toBe(0);
      expect(allow.stdout).toMatch(/1 waiting queued again/);
      const sent = await delivered(exchange);
      expect(version(sent)).toBe(1);
      expect(isJsonJws(sent.receipt!)).toBe(false);
      expect(await audit('partner.downgrade-decided')).toEqual([
        { agent_type: 'user', detail: { decision: 'allow-v1', cause: 'operator', requeued: 1 } },
      ]);
      // Allowed: the next one goes as v1 at once.
      expect(version(await delivered(await send()))).toBe(1);
    },
  );

  it('returns to v2 when the keys come back; a later loss holds again', { timeout: 120_000 }, async () => {
    await bPublishesPq(true);
    const d = await delivered(await send());
    expect(version(d)).toBe(2);
    expect(await partnerState()).toBe(null);
    await bPublishesPq(false);
    const exchange = await send();
    expect(await partnerState()).toBe('held');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await delivery(exchange)).toMatchObject({ state: 'pending', attempts: 0 });
    // Through the console this time: the partner row says v1 is held and offers the decision.
    const password = await addAuditUser(t.a.gw.app.ctx.pool, 'operator.pq', 'operator');
    const login = await request(t.a.gw.app.server)
      .post('/audit/ui/login')
      .set('Origin', t.a.gw.url)
      .send({ name: 'operator.pq', password })
      .expect(200);
    const cookie = String(login.headers['set-cookie']).split(';')[0]!;
    const page = await request(t.a.gw.app.server).get('/console/').set('Cookie', cookie).expect(200);
    expect(page.text).toMatch(/v1 held/);
    expect(page.text).toContain('data-action="downgrade/allow-v1"');
    // An unknown partner is 404 with an OperationOutcome, and decides nothing.
    const decisionsBefore = (await audit('partner.downgrade-decided')).length;
    const unknown = await request(t.a.gw.app.server)
      .post('/console/partners/nobody.example/downgrade/allow-v1')
      .set('Cookie', cookie)
      .set('Origin', t.a.gw.url)
      .send({});
    expect(unknown.status).toBe(404);
    expect(unknown.body.resourceType).toBe('OperationOutcome');
    expect((await audit('partner.downgrade-decided')).length).toBe(decisionsBefore);
    const decided = await request(t.a.gw.app.server)
      .post(`/console/partners/${encodeURIComponent(t.b.gw.config.org)}/downgrade/allow-v1`)
      .set('Cookie', cookie)
      .set('Origin', t.a.gw.url)
      .send({});
    expect(decided.status, JSON.stringify(decided.body)).toBe(200);
    expect(decided.body).toEqual({ partner: t.b.gw.config.org, decision: 'allow-v1', requeued: 1 });
    expect(version(await delivered(exchange))).toBe(1);
    expect((await audit('partner.downgrade-decided')).at(-1)).toMatchObject({ agent_type: 'user' });
  });

  it('PQ_DOWNGRADE=allow-v1 sends v1 without waiting, recorded as the policy decision', async () => {
    await bPublishesPq(true);
    expect(version(await delivered(await send()))).toBe(2);
    (t.a.gw.config as { pqDowngrade: string }).pqDowngrade = 'allow-v1';
    try {
      await bPublishesPq(false);
      expect(version(await delivered(await send()))).toBe(1);
      expect((await audit('partner.downgrade-decided')).at(-1)).toEqual({
        agent_type: 'gateway',
        detail: { decision: 'allow-v1', cause: 'policy', requeued: 0 },
      });
    } finally {
      (t.a.gw.config as { pqDowngrade: string }).pqDowngrade = 'hold';
    }
  });
});

describe('a v1-only peer', () => {
  let t: TwoGateways;
  beforeAll(async () => {
    t = await startTwoGateways({ PROTOCOL_V2: 'on' }, {}, { b: { PROTOCOL_V2: 'off' } });
  });
  afterAll(async () => t?.close());

  it('gets v1 both ways, with no hold: it never published post-quantum keys', { timeout: 90_000 }, async () => {
    for (const [from, to] of [
      [t.a, t.b],
      [t.b, t.a],
    ] as const) {
      const res = await request(from.gw.app.server)
        .post(`/exchanges?recipient=${encodeURIComponent(to.gw.config.org)}`)
        .set('authorization', await from.ehr.bearer())
        .type('application/fhir+json')
        .send(messageBundle([to.gw.config.org]));
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      const exchange = (res.headers['content-location'] as string).split('/').pop()!;
      const d = await waitFor(
        `exchange ${exchange} delivered`,
        async () => {
          const { rows } = await from.gw.app.ctx.pool.query<{ state: string; envelope: Buffer; receipt: string }>(
            `SELECT state, (SELECT e.envelope FROM delivery_envelopes e WHERE e.delivery_id = d.id) AS envelope, receipt FROM deliveries d WHERE exchange_id = $1`,
            [exchange],
          );
          return rows[0]?.state === 'delivered' ? rows[0] : undefined;
        },
        60_000,
        100,
      );
      expect(envelopeVersion(unpackCompactJwe(d.envelope))).toBe(1);
      expect(isJsonJws(d.receipt)).toBe(false);
    }
    const { rows } = await t.a.gw.app.ctx.pool.query('SELECT 1 FROM partners WHERE pq_downgrade IS NOT NULL');
    expect(rows).toHaveLength(0);
  });
});

import { execFileSync } from 'node:child_process';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messageBundle, settled, startOutbound, waitFor, type Outbound } from '../helpers/outbound.ts';
import { parsePromText, sampleValue, type PromSample } from '../helpers/prom-text.ts';
import { exposedNames } from '../../src/metrics/catalogue.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/ports.ts';
import { issueCheckpoint } from '../../src/audit/checkpoint.ts';

/**
 * /metrics against ground truth: rows made through the real intake pipeline
 * (and one timestamp moved back by a known amount), then scraped and parsed.
 */
describe('GET /metrics', () => {
  let o: Outbound;
  const locations: string[] = [];

  async function scrape(): Promise<{ text: string; samples: PromSample[] }> {
    const res = await request(o.gw.app.server).get('/metrics').set('authorization', o.adminAuth).expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    return { text: res.text, samples: parsePromText(res.text) };
  }

  async function send(partner: string): Promise<string> {
    const res = await request(o.gw.app.server)
      .post(`/exchanges?recipient=${encodeURIComponent(partner)}`)
      .set('authorization', o.ehrAuth)
      .type('application/fhir+json')
      .send(messageBundle([partner]))
      .expect(202);
    return res.headers['content-location'] as string;
  }

  beforeAll(async () => {
    // No state cache: each scrape reads the tables as they are now.
    o = await startOutbound({ DELIVERY_MAX_ATTEMPTS: '1' }, 2, { worker: false });
    o.gw.app.metrics.setCacheMs(0);
  }, 60_000);
  afterAll(async () => o?.close());

  it('is refused without an admin token (401, audited like any guarded route)', async () => {
    await request(o.gw.app.server).get('/metrics').expect(401);
    await request(o.gw.app.server).get('/metrics').set('authorization', o.ehrAuth).expect(403);
  });

  it('counts 3 pending deliveries to a partner and the age of the oldest (42 s)', async () => {
    const x = o.recipients[0]!.id;
    for (let i = 0; i < 3; i++) locations.push(await send(x));
    const { rows } = await o.gw.app.ctx.pool.query<{ id: string }>(
      `UPDATE deliveries SET created_at = now() - interval '42 seconds'
        WHERE id = (SELECT id FROM deliveries WHERE partner_id = $1 ORDER BY created_at LIMIT 1) RETURNING id`,
      [x],
    );
    expect(rows).toHaveLength(1);
    const { samples } = await scrape();
    expect(sampleValue(samples, 'gateway_deliveries', { partner: x, kind: 'bundle', state: 'pending' })).toBe(3);
    const age = sampleValue(samples, 'gateway_delivery_oldest_pending_age_seconds', { partner: x });
    expect(age).toBeGreaterThanOrEqual(42);
    expect(age).toBeLessThan(52);
    expect(sampleValue(samples, 'gateway_jobs_queued', { task: 'deliver' })).toBe(3);
    // The intake's audit entries wait for the first checkpoint (no worker runs yet).
    const unsigned = sampleValue(samples, 'gateway_audit_oldest_unsigned_age_seconds')!;
    expect(unsigned).toBeGreaterThanOrEqual(0);
    expect(unsigned).toBeLessThan(60);
    expect(sampleValue(samples, 'gateway_audit_checkpoint_age_seconds')).toBe(undefined);
    expect(sampleValue(samples, 'gateway_http_requests_total', { route: 'intake', status: '2xx' })).toBe(3);
    // No partner without a pending delivery is reported, and no exchange id appears as a label.
    expect(sampleValue(samples, 'gateway_delivery_oldest_pending_age_seconds', { partner: o.recipients[1]!.id })).toBe(
      undefined,
    );
    const labelValues = samples.flatMap((s) => Object.values(s.labels));
    for (const l of locations) expect(labelValues).not.toContain(l.split('/').pop());
  });

  it('counts a refusal by its error code', async () => {
    await request(o.gw.app.server)
      .post(`/exchanges?recipient=${encodeURIComponent(o.recipients[0]!.id)}`)
      .set('authorization', o.ehrAuth)
      .type('application/fhir+json')
      .send('{"resourceType":"Patient"}')
      .expect(422);
    const { samples } = await scrape();
    const refused = samples.filter((s) => s.name === 'gateway_http_refusals_total' && s.labels.route === 'intake');
    expect(refused).toHaveLength(1);
    expect(refused[0]!.value).toBe(1);
    expect(refused[0]!.labels.code).toBe('INVALID_FHIR');
    expect(sampleValue(samples, 'gateway_http_requests_total', { route: 'intake', status: '4xx' })).toBe(1);
    // A refusal by the guard (no token) is counted too, by its status.
    await request(o.gw.app.server).post('/exchanges').type('application/fhir+json').send('{}').expect(401);
    const after = (await scrape()).samples;
    expect(sampleValue(after, 'gateway_http_refusals_total', { route: 'intake', code: 'HTTP_401' })).toBe(1);
  });

  it('reports delivered, failed, attempts and receipt lag once the worker has run', async () => {
    const y = o.recipients[1]!;
    y.script.push({ kind: 'status', status: 400 });
    locations.push(await send(y.id));
    await o.startWorker();
    for (const l of locations) await settled(o, l);
    const { samples, text } = await waitFor('the queue to drain', async () => {
      const s = await scrape();
      return sampleValue(s.samples, 'gateway_jobs_queued', { task: 'deliver' }) === undefined ? s : undefined;
    });
    const x = o.recipients[0]!.id;
    expect(sampleValue(samples, 'gateway_deliveries', { partner: x, kind: 'bundle', state: 'delivered' })).toBe(3);
    expect(sampleValue(samples, 'gateway_deliveries', { partner: y.id, kind: 'bundle', state: 'failed' })).toBe(1);
    expect(sampleValue(samples, 'gateway_delivery_oldest_pending_age_seconds', { partner: x })).toBe(undefined);
    expect(sampleValue(samples, 'gateway_delivery_attempts_total', { kind: 'bundle', outcome: 'delivered' })).toBe(3);
    expect(sampleValue(samples, 'gateway_delivery_attempts_total', { kind: 'bundle', outcome: 'permanent' })).toBe(1);
    expect(sampleValue(samples, 'gateway_delivery_receipt_lag_seconds_count', { kind: 'bundle' })).toBe(3);
    // The delivery made 42 s old waited at least that long for its receipt: above the 15 s bucket, within 60 s.
    expect(sampleValue(samples, 'gateway_delivery_receipt_lag_seconds_bucket', { kind: 'bundle', le: '15' })).toBe(2);
    expect(sampleValue(samples, 'gateway_delivery_receipt_lag_seconds_bucket', { kind: 'bundle', le: '60' })).toBe(3);
    expect(sampleValue(samples, 'gateway_delivery_receipt_lag_seconds_bucket', { kind: 'bundle', le: '+Inf' })).toBe(3);
    // Own keys were just activated: each is a full cryptoperiod (or nearly) from rotation.
    const sig = sampleValue(samples, 'gateway_key_rotation_due_seconds', { use: 'sig' })!;
    expect(sig).toBeGreaterThan(90 * 86400 - 600);
    expect(sig).toBeLessThanOrEqual(90 * 86400);
    expect(sampleValue(samples, 'gateway_hsm_sessions', { state: 'busy' })).toBe(0);
    expect(sampleValue(samples, 'gateway_hsm_errors_total')).toBe(0);
    expect(sampleValue(samples, 'gateway_db_pool_connections', { state: 'total' })).toBeGreaterThan(0);

    // Every name exposed is in the catalogue, and the exposition passes promtool's own check.
    const catalogue = exposedNames();
    for (const s of samples) expect(catalogue.has(s.name), s.name).toBe(true);
    execFileSync('promtool', ['check', 'metrics'], { input: text });
  }, 60_000);

  it('reports the age of the last checkpoint, a failing partner JWKS refresh and a partner key expiry', async () => {
    const x = o.recipients[0]!.id;
    await o.gw.app.ctx.pool.query(
      `INSERT INTO partner_jwks_checks (partner_id, checked_at, ok, error) VALUES ($1, now() - interval '30 seconds', false, 'status 503')
       ON CONFLICT (partner_id) DO UPDATE SET checked_at = excluded.checked_at, ok = false, error = excluded.error`,
      [x],
    );
    // A partner key that carries an exp, an hour from now, as a refresh records it.
    const exp = Math.floor(Date.now() / 1000) + 3600;
    await o.gw.app.ctx.pool.query(
      `INSERT INTO partner_keys_seen (partner_id, kid, thumbprint, use, jwk) VALUES ($1, 'expiring-key', 'tp-expiring', 'sig', $2)`,
      [x, JSON.stringify({ kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA', kid: 'expiring-key', exp })],
    );
    // Checkpoints are append-only: the newest is the one just issued.
    const cp = await issueCheckpoint(o.gw.app.ctx, { force: true });
    expect(cp).toBeDefined();
    const issuedAgo = (Date.now() - cp!.issuedAt.getTime()) / 1000;
    const { samples } = await scrape();
    expect(sampleValue(samples, 'gateway_partner_jwks_refresh_failing', { partner: x })).toBe(1);
    const checked = sampleValue(samples, 'gateway_partner_jwks_last_check_age_seconds', { partner: x })!;
    expect(checked).toBeGreaterThanOrEqual(30);
    expect(checked).toBeLessThan(40);
    const expiry = sampleValue(samples, 'gateway_partner_key_expiry_seconds', { partner: x, kid: 'expiring-key' })!;
    expect(expiry).toBeGreaterThan(3600 - 30);
    expect(expiry).toBeLessThanOrEqual(3600);
    // Keys without an exp (the recipients' own) are not reported.
    expect(samples.filter((s) => s.name === 'gateway_partner_key_expiry_seconds')).toHaveLength(1);
    const age = sampleValue(samples, 'gateway_audit_checkpoint_age_seconds')!;
    expect(age).toBeGreaterThanOrEqual(Math.max(0, issuedAgo - 1));
    expect(age).toBeLessThan(issuedAgo + 10);
  });
});

describe('METRICS_LISTEN=HOST:PORT', () => {
  let gw: TestGateway;
  let base: string;

  beforeAll(async () => {
    const port = await freePort();
    gw = await startTestGateway({ METRICS_LISTEN: `127.0.0.1:${port}` });
    base = `http://127.0.0.1:${port}`;
  }, 60_000);
  afterAll(async () => gw?.close());

  it('serves GET /metrics on its own listener, without a token, and nothing else', async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(parsePromText(await res.text()).some((s) => s.name === 'gateway_hsm_sessions')).toBe(true);
    const post = await fetch(`${base}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(((await post.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');
    const other = await fetch(`${base}/admin/deliveries`);
    expect(other.status).toBe(404);
    expect(((await other.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');
  });

  it('is not on the main listener then', async () => {
    const res = await fetch(`${gw.url}/metrics`);
    expect(res.status).toBe(404);
  });
});

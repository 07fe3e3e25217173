import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { messageBundle, settled, startOutbound, type Outbound } from '../helpers/outbound.ts';
import { deliver } from '../../src/outbound/deliver.ts';

describe('outbound delivery: classified failures, bounded retries, receipts that must verify', () => {
  let o: Outbound;
  beforeAll(async () => {
    // Short timeout and backoff so faults play out in seconds.
    o = await startOutbound(
      {
        DELIVERY_TIMEOUT: '700ms',
        DELIVERY_RETRY_BASE: '100ms',
        DELIVERY_RETRY_MAX: '300ms',
        DELIVERY_MAX_ATTEMPTS: '4',
      },
      1,
    );
  });
  afterAll(async () => o?.close());

  const send = async () => {
    const r = o.recipients[0]!;
    const res = await request(o.gw.app.server)
      .post('/fhir/$process-message')
      .set('authorization', o.ehrAuth)
      .type('application/fhir+json')
      .send(messageBundle([r.id]))
      .expect(202);
    return res.headers['content-location'] as string;
  };

  it('retries 503 three times, then delivers on 200', async () => {
    o.recipients[0]!.script.push(
      { kind: 'status', status: 503 },
      { kind: 'status', status: 503 },
      { kind: 'status', status: 503, retryAfter: '0' },
    );
    const view = await settled(o, await send());
    const d = view.recipients[0];
    expect(d.state).toBe('delivered');
    expect(d.attempts.map((a: { outcome: string; http_status: number }) => `${a.outcome}/${a.http_status}`)).toEqual([
      'transient/503',
      'transient/503',
      'transient/503',
      'delivered/200',
    ]);
    // Backoff: attempts are spaced, not hammered.
    const times = d.attempts.map((a: { at: string }) => Date.parse(a.at));
    for (let i = 1; i < times.length; i++) expect(times[i] - times[i - 1]).toBeGreaterThanOrEqual(50);
  });

  it('a pending delivery whose sealed envelope is gone fails its job with a clear error and sends nothing', async () => {
    const view = await settled(o, await send());
    const id = view.recipients[0].delivery as string;
    // Damage at rest: the envelope row lost, the delivery pending again.
    await o.gw.app.ctx.pool.query('DELETE FROM delivery_envelopes WHERE delivery_id = $1', [id]);
    await o.gw.app.ctx.pool.query(`UPDATE deliveries SET state = 'pending', delivered_at = NULL WHERE id = $1`, [id]);
    const posts = o.recipients[0]!.received.size;
    await expect(deliver(o.gw.app.ctx, id)).rejects.toThrow(
      `delivery ${id} is pending but its sealed envelope is missing`,
    );
    expect(o.recipients[0]!.received.size).toBe(posts);
  });

  it('fails a 400 permanently without retrying', async () => {
    o.recipients[0]!.script.push({ kind: 'status', status: 400 });
    const view = await settled(o, await send());
    const d = view.recipients[0];
    expect(d).toMatchObject({ state: 'failed', last_error: 'HTTP 400' });
    expect(d.attempts).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 600));
    const again = await request(o.gw.app.server)
      .get(`/exchanges/${view.id}`)
      .set('authorization', o.ehrAuth)
      .expect(200);
    expect(again.body.recipients[0].attempts).toHaveLength(1);
    const audit = await o.gw.app.ctx.pool.query(
      `SELECT count(*)::int AS n FROM audit_log WHERE type = 'delivery.failed' AND entry LIKE $1`,
      [`%${d.delivery}%`],
    );
    expect(audit.rows[0].n).toBe(1);
  });

  it('times out a hung recipient and retries', async () => {
    o.recipients[0]!.script.push({ kind: 'hang' });
    const view = await settled(o, await send());
    const d = view.recipients[0];
    expect(d.state).toBe('delivered');
    expect(d.attempts[0]).toMatchObject({ outcome: 'transient', http_status: null });
    expect(d.attempts[0].error).toMatch(/timeout/);
    expect(d.attempts[0].duration_ms).toBeGreaterThanOrEqual(600);
    expect(d.attempts[1]).toMatchObject({ outcome: 'delivered', http_status: 200 });
  });

  it('does not count a forged receipt or a receipt for other bytes as delivered', async () => {
    const r = o.recipients[0]!;
    r.script.push(
      { kind: 'forged-receipt' },
      { kind: 'wrong-digest' },
      { kind: 'forged-receipt' },
      { kind: 'wrong-digest' },
    );
    const view = await settled(o, await send());
    const d = view.recipients[0];
    expect(d.state).toBe('failed');
    expect(d.receipt).toBeNull();
    expect(d.attempts.map((a: { outcome: string }) => a.outcome)).toEqual([
      'invalid-receipt',
      'invalid-receipt',
      'invalid-receipt',
      'invalid-receipt',
    ]);
    expect(d.attempts[1].error).toMatch(/digest/);

    // The operator retries it; the same delivery id and envelope now get a valid receipt.
    await request(o.gw.app.server)
      .post(`/admin/deliveries/${d.delivery}/retry`)
      .set('authorization', o.adminAuth)
      .expect(202);
    const after = await settled(o, `/exchanges/${view.id}`);
    expect(after.recipients[0]).toMatchObject({ state: 'delivered', delivery: d.delivery });
    expect(after.recipients[0].attempts).toHaveLength(5);
    expect(r.received.get(d.delivery)!.idempotencyKey).toBe(d.delivery);
    // Retrying a delivered delivery is a conflict.
    await request(o.gw.app.server)
      .post(`/admin/deliveries/${d.delivery}/retry`)
      .set('authorization', o.adminAuth)
      .expect(409);
    await request(o.gw.app.server)
      .post(`/admin/deliveries/${d.delivery}/retry`)
      .set('authorization', o.ehrAuth)
      .expect(403);
  });

  it('gives up on transient failures after DELIVERY_MAX_ATTEMPTS and lists the delivery as failed', async () => {
    o.recipients[0]!.script.push(...Array.from({ length: 4 }, () => ({ kind: 'status' as const, status: 502 })));
    const view = await settled(o, await send());
    expect(view.recipients[0].state).toBe('failed');
    expect(view.recipients[0].attempts).toHaveLength(4);
    expect(view.recipients[0].last_error).toMatch(/gave up after 4 attempts/);
    const list = await request(o.gw.app.server)
      .get('/admin/deliveries?state=failed')
      .set('authorization', o.adminAuth)
      .expect(200);
    expect(list.body.deliveries.map((x: { id: string }) => x.id)).toContain(view.recipients[0].delivery);
  });
});

describe('outbound delivery: the retry horizon', () => {
  let o: Outbound;
  beforeAll(async () => {
    o = await startOutbound({ DELIVERY_HORIZON: '2s', DELIVERY_RETRY_BASE: '100ms' }, 1);
  });
  afterAll(async () => o?.close());

  it('fails a delivery whose next attempt (Retry-After) would fall beyond DELIVERY_HORIZON', async () => {
    const r = o.recipients[0]!;
    r.script.push({ kind: 'status', status: 429, retryAfter: '30' });
    const res = await request(o.gw.app.server)
      .post('/fhir/$process-message')
      .set('authorization', o.ehrAuth)
      .type('application/fhir+json')
      .send(messageBundle([r.id]))
      .expect(202);
    const view = await settled(o, res.headers['content-location'] as string);
    expect(view.recipients[0]).toMatchObject({ state: 'failed' });
    expect(view.recipients[0].attempts).toEqual([expect.objectContaining({ outcome: 'transient', http_status: 429 })]);
  });

  it('honours Retry-After within the horizon', async () => {
    const r = o.recipients[0]!;
    r.script.push({ kind: 'status', status: 503, retryAfter: '1' });
    const res = await request(o.gw.app.server)
      .post('/fhir/$process-message')
      .set('authorization', o.ehrAuth)
      .type('application/fhir+json')
      .send(messageBundle([r.id]))
      .expect(202);
    const view = await settled(o, res.headers['content-location'] as string);
    const [first, second] = view.recipients[0].attempts;
    expect(view.recipients[0].state).toBe('delivered');
    expect(Date.parse(second.at) - Date.parse(first.at)).toBeGreaterThanOrEqual(1000);
  });
});

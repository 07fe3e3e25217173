import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { claimsFor, publishedEncKey, seal, signContent, softPartner, type SoftPartner } from '../helpers/envelopes.ts';
import { waitFor } from '../helpers/outbound.ts';
import { freePort } from '../helpers/ports.ts';
import { startWorker, type WorkerHandle } from '../../src/worker/runner.ts';
import { forwardUrl } from '../../src/inbound/forward.ts';

interface Hit {
  path: string;
  body: string;
  delivery: string;
}

/**
 * Optional push hand-over: with LOCAL_FHIR_BASE_URL set, each accepted message
 * is forwarded to the local FHIR server by a queued job (payload: id only),
 * retried on transient failures, recorded and not retried on a 4xx.
 */
describe('forwarding received bundles to LOCAL_FHIR_BASE_URL', () => {
  let gw: TestGateway;
  let worker: WorkerHandle;
  let ehr: Server;
  let partner: SoftPartner;
  const hits: Hit[] = [];
  /** Per delivery id, the statuses the fake EHR answers in turn (then 200). */
  const script = new Map<string, number[]>();

  beforeAll(async () => {
    const port = await freePort();
    ehr = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        const delivery = String(req.headers['x-exchange-delivery']);
        hits.push({ path: req.url!, body, delivery });
        const status = script.get(delivery)?.shift() ?? 200;
        res
          .writeHead(status, { 'content-type': 'application/fhir+json' })
          .end('{"resourceType":"OperationOutcome","issue":[]}');
      });
    });
    await new Promise<void>((r) => ehr.listen(port, '127.0.0.1', r));
    gw = await startTestGateway({ LOCAL_FHIR_BASE_URL: `http://127.0.0.1:${port}/fhir`, DELIVERY_MAX_ATTEMPTS: '3' });
    partner = await softPartner('https://partner-fwd.test');
    await gw.app.ctx.directory.add({ id: partner.id, endpoint: 'https://partner-fwd.test/inbox', jwks: partner.jwks });
    worker = await startWorker(gw.app.ctx);
  });
  afterAll(async () => {
    await worker?.stop();
    await gw?.close();
    await new Promise((r) => ehr?.close(r));
  });

  /** Receive a bundle whose delivery id is known in advance, so the fake EHR's script can name it. */
  async function receive(bundleText: string, ehrAnswers: number[]): Promise<{ jti: string; id: string }> {
    const claims = claimsFor(partner, gw.config.org, JSON.parse(bundleText));
    script.set(claims.jti, ehrAnswers);
    // The payload carries the bundle bytes verbatim (as this gateway's sender writes it).
    const payloadText = JSON.stringify({ ...claims, content: undefined }).slice(0, -1) + `,"content":${bundleText}}`;
    const res = await fetch(`${gw.url}/inbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/jose' },
      body: seal(await publishedEncKey(gw.url), await signContent(partner, claims, { payloadText })),
    });
    expect(res.status).toBe(200);
    const { rows } = await gw.app.ctx.pool.query('SELECT id FROM inbox_messages WHERE jti = $1', [claims.jti]);
    return { jti: claims.jti, id: rows[0].id };
  }

  it('routes bundles by type', () => {
    expect(forwardUrl('http://ehr/fhir', 'transaction')).toBe('http://ehr/fhir');
    expect(forwardUrl('http://ehr/fhir', 'batch')).toBe('http://ehr/fhir');
    expect(forwardUrl('http://ehr/fhir', 'message')).toBe('http://ehr/fhir/$process-message');
    expect(forwardUrl('http://ehr/fhir', 'collection')).toBe('http://ehr/fhir/Bundle');
  });

  it('queues jobs whose payload is the message id only, keyed by it', async () => {
    const { enqueueForwards } = await import('../../src/inbound/forward.ts');
    const id = randomUUID();
    const client = await gw.app.ctx.pool.connect();
    try {
      await client.query('BEGIN');
      await enqueueForwards(client, [id], 3);
      const { rows } = await client.query(
        `SELECT j.payload, j.key, j.max_attempts FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id WHERE t.identifier = 'inbox-forward' AND j.key = $1`,
        [`inbox-forward:${id}`],
      );
      expect(rows).toEqual([{ payload: { messageId: id }, key: `inbox-forward:${id}`, max_attempts: 3 }]);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  it('retries a 503, then hands the exact bundle bytes to the EHR', async () => {
    const bundleText = `{ "resourceType": "Bundle", "type": "transaction", "entry": [ { "fullUrl": "urn:uuid:${randomUUID()}", "resource": { "resourceType": "Basic" }, "request": { "method": "POST", "url": "Basic" } } ] }`;
    const m = await receive(bundleText, [503]);
    const state = await waitFor(
      'forwarded',
      async () => {
        const r = await gw.app.ctx.pool.query('SELECT state, forward_attempts FROM inbox_messages WHERE id = $1', [
          m.id,
        ]);
        return r.rows[0].state === 'forwarded' ? r.rows[0] : undefined;
      },
      30_000,
      200,
    );
    expect(state.forward_attempts).toBe(2);
    const mine = hits.filter((h) => h.delivery === m.jti);
    expect(mine.map((h) => h.path)).toEqual(['/fhir', '/fhir']);
    expect(mine[1]!.body).toBe(bundleText);
    const audit = await gw.app.ctx.pool.query(
      `SELECT type FROM audit_log WHERE type LIKE 'inbox.forward%' AND entry LIKE $1 ORDER BY idx`,
      [`%${m.id}%`],
    );
    expect(audit.rows.map((r) => r.type)).toEqual(['inbox.forward-failed', 'inbox.forwarded']);
  });

  it('records a 4xx from the EHR and does not retry it', async () => {
    const m = await receive(JSON.stringify({ resourceType: 'Bundle', type: 'collection', entry: [] }), [422]);
    const row = await waitFor(
      'forward refused',
      async () => {
        const r = await gw.app.ctx.pool.query(
          'SELECT state, forward_attempts, forward_error FROM inbox_messages WHERE id = $1',
          [m.id],
        );
        return r.rows[0].forward_attempts > 0 ? r.rows[0] : undefined;
      },
      20_000,
      200,
    );
    expect(row).toMatchObject({ state: 'received', forward_attempts: 1, forward_error: 'HTTP 422' });
    await new Promise((r) => setTimeout(r, 3_500)); // past graphile-worker's first backoff: no second attempt
    const mine = hits.filter((h) => h.delivery === m.jti);
    expect(mine.map((h) => h.path)).toEqual(['/fhir/Bundle']);
  });
});

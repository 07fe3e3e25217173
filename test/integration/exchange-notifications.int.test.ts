import { describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import type { Peer } from '../helpers/two-gateways.ts';
import { orderMessage, responseMessageTo, waitFor } from '../helpers/outbound.ts';
import { acknowledgeAt, EhrEndpoint, gatewaysWithEndpoint } from '../helpers/ehr-endpoint.ts';
import { r4Errors } from '../helpers/r4-validator.ts';

/**
 * The sending EHR learns each outcome of its exchange without polling: A's
 * EHR gives a response-url with $process-message, and every state change
 * (delivered, processed, response received, failed, expired) reaches a real
 * HTTP listener there as an id-only FHIR response message; a listener that
 * is down gets the notification once it is back; a partner that stays down
 * produces the non-delivery notice.
 */
interface Notice {
  resourceType: 'Bundle';
  type: string;
  id: string;
  entry: Array<{ fullUrl: string; resource: Record<string, unknown> }>;
}

interface HeaderView {
  focus: Array<{ reference: string }>;
  response: { identifier: string; code: string; details?: { reference: string } };
  extension: Array<{ url: string; valueCode?: string; valueString?: string }>;
}

interface OutcomeView {
  resourceType: string;
  issue: Array<{ severity: string; diagnostics: string }>;
}

/** The EHR's endpoint, with the notices about one exchange. */
class Hook extends EhrEndpoint<Notice> {
  get notices(): Notice[] {
    return this.received;
  }
  /** The notices about `exchange`, in the order they arrived. */
  about(exchange: string): Notice[] {
    return this.notices.filter((n) => header(n).focus[0]?.reference.endsWith(`/Task/${exchange}`) === true);
  }
  state = (exchange: string) => this.about(exchange).map((n) => stateOf(n));
}

const header = (n: Notice) => n.entry[0]!.resource as unknown as HeaderView;
const stateOf = (n: Notice) => header(n).extension.find((e) => e.url.endsWith(':state'))!.valueCode;

async function send(p: Peer, body: string, responseUrl?: string): Promise<request.Response> {
  const q = responseUrl === undefined ? '' : `?response-url=${encodeURIComponent(responseUrl)}`;
  return request(p.gw.app.server)
    .post(`/fhir/$process-message${q}`)
    .set({ authorization: await p.ehr.bearer(), 'content-type': 'application/fhir+json' })
    .send(body);
}

const exchangeOf = (res: request.Response) => (res.headers.location as string).split('/').pop()!;

const delivery = async (p: Peer, exchange: string) =>
  (await p.gw.app.ctx.pool.query<{ id: string }>('SELECT id FROM deliveries WHERE exchange_id = $1', [exchange]))
    .rows[0]!.id;

describe('telling the sending EHR by its response-url', () => {
  const hook = new Hook();
  const gws = gatewaysWithEndpoint(hook, { DELIVERY_MAX_ATTEMPTS: '3' });

  it('delivered, processed and response received each arrive as an id-only response message naming the original', async () => {
    const { a, b } = gws;
    const headerId = randomUUID();
    const res = await send(a, orderMessage(b.gw.config.org, headerId), hook.url);
    expect(res.status).toBe(202);
    const exchange = exchangeOf(res);
    await waitFor('delivered notice', async () => (hook.state(exchange).includes('delivered') ? true : undefined));
    await acknowledgeAt(b, await delivery(a, exchange));
    await waitFor('processed notice', async () => (hook.state(exchange).includes('processed') ? true : undefined));

    const answer = responseMessageTo(headerId);
    expect((await send(b, answer)).status).toBe(202);
    await waitFor('response notice', async () =>
      hook.state(exchange).includes('response-received') ? true : undefined,
    );
    expect(hook.state(exchange)).toEqual(['delivered', 'processed', 'response-received']);
    expect([...hook.contentTypes]).toEqual(['application/fhir+json']);

    for (const n of hook.about(exchange)) {
      expect(r4Errors(n)).toEqual([]);
      expect(n.type).toBe('message');
      const h = header(n);
      expect(h.response.identifier).toBe(headerId);
      expect(h.response.code).toBe('ok');
      expect(h.focus).toEqual([{ reference: `${a.gw.config.baseUrl}/fhir/Task/${exchange}` }]);
      // Id-only: nothing of the message's content travels.
      expect(JSON.stringify(n)).not.toContain('order ');
      expect(n.entry).toHaveLength(1);
    }
    const received = hook.about(exchange)[2]!;
    const responseMessage = header(received).extension.find((e: { url: string }) =>
      e.url.endsWith(':response-message'),
    );
    expect(responseMessage?.valueString).toMatch(/^[0-9a-f-]{36}$/);

    await waitFor('three notification.sent entries', async () => {
      const { rows } = await a.gw.app.ctx.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM audit_log WHERE type = 'notification.sent' AND entry LIKE $1`,
        [`%${exchange}%`],
      );
      return rows[0]!.n === 3 ? true : undefined;
    });
  });

  it('a notification endpoint that is down is retried, and the notice arrives once it is back', async () => {
    const { a, b } = gws;
    let refusals = 0;
    hook.down = () => refusals++ < 2;
    const res = await send(a, orderMessage(b.gw.config.org, randomUUID()), hook.url);
    const exchange = exchangeOf(res);
    await waitFor('delivered notice after the endpoint came back', async () =>
      hook.state(exchange).includes('delivered') ? true : undefined,
    );
    hook.down = () => false;
    expect(refusals).toBeGreaterThanOrEqual(2);
    expect(hook.state(exchange)).toEqual(['delivered']);
    // The attempt is recorded once the endpoint has answered: wait for that commit.
    const row = await waitFor('the notification recorded as sent', async () => {
      const { rows } = await a.gw.app.ctx.pool.query<{ state: string; attempts: number }>(
        `SELECT n.state, n.attempts FROM exchange_notifications n JOIN exchange_events e ON e.id = n.event_id WHERE e.exchange_id = $1`,
        [exchange],
      );
      return rows.length === 1 && rows[0]!.state === 'sent' ? rows[0] : undefined;
    });
    expect(row).toEqual({ state: 'sent', attempts: 3 });
  });

  it('an endpoint that refuses a notification (a 4xx) is given up at once and audited as notification.failed', async () => {
    const { a, b } = gws;
    const bad = `${hook.url}?refuse`;
    const res = await send(a, orderMessage(b.gw.config.org, randomUUID()), bad);
    const exchange = exchangeOf(res);
    const failed = await waitFor('notification.failed', async () => {
      const { rows } = await a.gw.app.ctx.pool.query<{ entry: string }>(
        `SELECT entry FROM audit_log WHERE type = 'notification.failed' AND entry LIKE $1`,
        [`%${exchange}%`],
      );
      return rows[0];
    });
    expect(failed.entry).toContain('permanent');
    expect(hook.about(exchange)).toEqual([]);
  });

  it('a response-url that is not https (nor loopback http) is refused at intake with an OperationOutcome, and audited', async () => {
    const { a, b } = gws;
    for (const bad of ['http://10.0.0.7/hook', 'ftp://127.0.0.1/x', 'https://user:pw@ehr.example/hook', 'not a url']) {
      const res = await send(a, orderMessage(b.gw.config.org, randomUUID()), bad);
      expect(res.status).toBe(400);
      expect(res.body.resourceType).toBe('OperationOutcome');
    }
    const { rows } = await a.gw.app.ctx.pool.query(
      `SELECT count(*)::int AS n FROM audit_log WHERE type = 'intake.refused'`,
    );
    expect(rows[0].n).toBeGreaterThanOrEqual(4);
  });

  it('a partner that stays down produces the non-delivery notice: fatal-error with an OperationOutcome saying why', async () => {
    const { a, b } = gws;
    await b.worker?.stop();
    await b.gw.close();
    const headerId = randomUUID();
    const res = await send(a, orderMessage(b.gw.config.org, headerId), hook.url);
    expect(res.status).toBe(202);
    const exchange = exchangeOf(res);
    const notice = await waitFor(
      'non-delivery notice',
      async () => hook.about(exchange).find((n) => header(n).response.code === 'fatal-error'),
      30_000,
    );
    expect(r4Errors(notice)).toEqual([]);
    expect(stateOf(notice)).toBe('failed');
    const h = header(notice);
    expect(h.response.identifier).toBe(headerId);
    const outcome = notice.entry.find((e) => e.fullUrl === h.response.details?.reference)!
      .resource as unknown as OutcomeView;
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0]!.severity).toBe('fatal');
    expect(outcome.issue[0]!.diagnostics).toMatch(/delivery attempt/);
  });
});

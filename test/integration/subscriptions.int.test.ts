import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { startTwoGateways, type Peer, type TwoGateways } from '../helpers/two-gateways.ts';
import { testClient, type TestClient } from '../helpers/auth.ts';
import { messageBundle, waitFor } from '../helpers/outbound.ts';
import { freePort } from '../helpers/ports.ts';
import { r4Errors } from '../helpers/r4-validator.ts';
import { startWorker } from '../../src/worker/runner.ts';
import { SUBSCRIPTION_HEARTBEAT_TASK } from '../../src/worker/tasks/subscription-heartbeat.ts';
import { SCOPE_ALL_READ, SCOPE_ALL_WRITE, SCOPE_BUNDLE_WRITE } from '../../src/auth/scopes.ts';
import { readFileSync } from 'node:fs';
import { DICOM_FIXTURES } from '../helpers/imaging.ts';

/**
 * FHIR Subscriptions (R4 Backport IG) between two real gateways: A's EHR
 * subscribes at A to the exchange-state topic with a rest-hook on a real
 * HTTP listener; a message A → B is delivered, acknowledged at B and
 * answered by B's EHR, and A's subscriber gets an id-only event notification
 * for each, whose focus it then reads. Handshake, heartbeat, a subscriber
 * that is down (the notification survives a worker restart), the refusals,
 * and a delivery past DELIVERY_HORIZON.
 */
interface Parameter {
  name: string;
  valueString?: string;
  valueCode?: string;
  valueCanonical?: string;
  valueInstant?: string;
  valueReference?: { reference: string };
  extension?: Array<{ url: string; valueCode?: string }>;
  part?: Parameter[];
}

interface Notification {
  resourceType: 'Bundle';
  type: string;
  entry: Array<{ fullUrl: string; resource?: { resourceType: string; parameter: Parameter[] } }>;
}

const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';

/** The subscriber's endpoint: records every notification (and every response message); 503 while `down` says so. */
class Hook {
  readonly received: Notification[] = [];
  down = (_n: Notification) => false;
  server!: Server;
  url!: string;
  async start(): Promise<void> {
    const port = await freePort();
    this.server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        const n = JSON.parse(body) as Notification;
        if (this.down(n)) {
          res.writeHead(503, { 'retry-after': '0' }).end();
          return;
        }
        this.received.push(n);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${port}/ehr/subscription`;
  }
  /** The backport notifications for one subscription, in arrival order. */
  of(subscription: string): Notification[] {
    return this.received.filter(
      (n) => n.type === 'history' && param(n, 'subscription')?.valueReference?.reference.endsWith(`/${subscription}`),
    );
  }
  events(subscription: string) {
    return this.of(subscription).filter((n) => param(n, 'type')?.valueCode === 'event-notification');
  }
}

const status = (n: Notification) => n.entry[0]!.resource!;
const param = (n: Notification, name: string) => status(n).parameter.find((p) => p.name === name);
const event = (n: Notification) => param(n, 'notification-event')!;
const part = (n: Notification, name: string) => event(n).part!.find((p) => p.name === name);
const kindOf = (n: Notification) => event(n).extension![0]!.valueCode;
const focusOf = (n: Notification) => part(n, 'focus')?.valueReference?.reference;

function subscription(topic: string, endpoint: string, more: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'tell the EHR of its exchanges',
    criteria: topic,
    channel: {
      type: 'rest-hook',
      endpoint,
      payload: 'application/fhir+json',
      _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: 'id-only' }] },
    },
    ...more,
  };
}

const topicOf = (p: Peer) => `${p.gw.config.baseUrl}/fhir/SubscriptionTopic/exchange-state`;

async function ehrClient(p: Peer): Promise<TestClient> {
  return testClient(p.gw, { scopes: [SCOPE_BUNDLE_WRITE, SCOPE_ALL_READ, SCOPE_ALL_WRITE], receivesFrom: ['*'] });
}

async function subscribe(p: Peer, client: TestClient, body: unknown): Promise<request.Response> {
  return request(p.gw.app.server)
    .post('/fhir/Subscription')
    .set({ authorization: await client.bearer(), 'content-type': 'application/fhir+json' })
    .send(JSON.stringify(body));
}

async function readSubscription(p: Peer, client: TestClient, id: string): Promise<request.Response> {
  return request(p.gw.app.server)
    .get(`/fhir/Subscription/${id}`)
    .set('authorization', await client.bearer());
}

/** Subscribe and wait for the handshake to make it active. */
async function activeSubscription(p: Peer, client: TestClient, hook: Hook, more: Record<string, unknown> = {}) {
  const res = await subscribe(p, client, subscription(topicOf(p), hook.url, more));
  expect(res.status).toBe(201);
  const id = res.body.id as string;
  await waitFor('handshake', async () =>
    hook.of(id).some((n) => param(n, 'type')?.valueCode === 'handshake') ? true : undefined,
  );
  await waitFor('subscription active', async () =>
    (await readSubscription(p, client, id)).body.status === 'active' ? true : undefined,
  );
  return id;
}

function order(to: string, headerId: string): string {
  const b = JSON.parse(messageBundle([to], 800, `order ${headerId}`)) as {
    entry: Array<{ resource: Record<string, unknown> }>;
  };
  Object.assign(b.entry[0]!.resource, {
    id: headerId,
    eventCoding: { system: 'urn:example:events', code: 'referral' },
  });
  return JSON.stringify(b);
}

async function send(p: Peer, client: TestClient, body: string, query = ''): Promise<string> {
  const res = await request(p.gw.app.server)
    .post(`/fhir/$process-message${query}`)
    .set({ authorization: await client.bearer(), 'content-type': 'application/fhir+json' })
    .send(body);
  expect(res.status).toBe(202);
  return (res.headers.location as string).split('/').pop()!;
}

async function auditCount(p: Peer, type: string, like = '%'): Promise<number> {
  const { rows } = await p.gw.app.ctx.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM audit_log WHERE type = $1 AND entry LIKE $2`,
    [type, like],
  );
  return rows[0]!.n;
}

describe('FHIR Subscriptions on the exchange-state topic, between two gateways', () => {
  let gws: TwoGateways;
  const hook = new Hook();
  beforeAll(async () => {
    await hook.start();
    gws = await startTwoGateways({ DELIVERY_MAX_ATTEMPTS: '3' });
  });
  afterAll(async () => {
    await gws?.close();
    await new Promise((r) => hook.server?.close(r));
  });

  it('a handshake activates the subscription; delivered, processed and response received arrive as numbered id-only events whose focus the subscriber reads', async () => {
    const { a, b } = gws;
    const ehr = await ehrClient(a);
    const created = await subscribe(a, ehr, subscription(topicOf(a), hook.url));
    expect(created.status).toBe(201);
    expect(created.headers.location).toBe(`${a.gw.config.baseUrl}/fhir/Subscription/${created.body.id}`);
    expect(created.body.status).toBe('requested');
    expect(r4Errors(created.body)).toEqual([]);
    const id = created.body.id as string;
    await waitFor('handshake', async () => (hook.of(id).length ? true : undefined));
    const handshake = hook.of(id)[0]!;
    expect(r4Errors(handshake)).toEqual([]);
    expect(param(handshake, 'type')?.valueCode).toBe('handshake');
    expect(param(handshake, 'topic')?.valueCanonical).toBe(topicOf(a));
    expect(param(handshake, 'events-since-subscription-start')?.valueString).toBe('0');
    await waitFor('active', async () =>
      (await readSubscription(a, ehr, id)).body.status === 'active' ? true : undefined,
    );

    const headerId = randomUUID();
    const exchange = await send(a, ehr, order(b.gw.config.org, headerId));
    await waitFor('delivered event', async () => (hook.events(id).length >= 1 ? true : undefined));
    const { rows } = await a.gw.app.ctx.pool.query<{ id: string }>('SELECT id FROM deliveries WHERE exchange_id = $1', [
      exchange,
    ]);
    const atB = await waitFor('the message in B inbox', async () => {
      const res = await request(b.gw.app.server)
        .get('/inbox/messages?_count=1000')
        .set('authorization', await b.ehr.bearer());
      return (res.body.messages as Array<{ id: string; delivery: string }>).find((m) => m.delivery === rows[0]!.id);
    });
    await request(b.gw.app.server)
      .post(`/inbox/messages/${atB.id}/$ack`)
      .set('authorization', await b.ehr.bearer())
      .expect(200);
    await waitFor('processed event', async () => (hook.events(id).length >= 2 ? true : undefined));
    const answerId = randomUUID();
    const answer = {
      resourceType: 'Bundle',
      type: 'message',
      entry: [
        {
          fullUrl: `urn:uuid:${answerId}`,
          resource: {
            resourceType: 'MessageHeader',
            id: answerId,
            eventCoding: { system: 'urn:example:events', code: 'referral-response' },
            source: { endpoint: 'urn:example:ehr-b' },
            response: { identifier: headerId, code: 'ok' },
          },
        },
      ],
    };
    await send(b, b.ehr, JSON.stringify(answer));
    await waitFor('response event', async () => (hook.events(id).length >= 3 ? true : undefined));

    const events = hook.events(id);
    expect(events.map(kindOf)).toEqual(['delivered', 'processed', 'response-received']);
    expect(events.map((n) => part(n, 'event-number')?.valueString)).toEqual(['1', '2', '3']);
    for (const n of events) {
      expect(r4Errors(n)).toEqual([]);
      expect(param(n, 'status')?.valueCode).toBe('active');
      // Id-only: the focus by its URL, with no resource, and nothing of the message's content.
      expect(focusOf(n)).toBe(`${a.gw.config.baseUrl}/fhir/Task/${exchange}`);
      expect(n.entry[1]).toEqual({
        fullUrl: focusOf(n),
        request: { method: 'GET', url: `Task/${exchange}` },
        response: { status: '200' },
      });
      expect(JSON.stringify(n)).not.toContain('order ');
      const task = await request(a.gw.app.server)
        .get(new URL(focusOf(n)!).pathname)
        .set('authorization', await ehr.bearer());
      expect(task.status).toBe(200);
      expect(task.body.resourceType).toBe('Task');
    }
    const st = await request(a.gw.app.server)
      .get(`/fhir/Subscription/${id}/$status`)
      .set('authorization', await ehr.bearer())
      .expect(200);
    expect(r4Errors(st.body)).toEqual([]);
    const queried = st.body.entry[0].resource as { parameter: Parameter[] };
    expect(queried.parameter.find((p) => p.name === 'events-since-subscription-start')?.valueString).toBe('3');
    expect(queried.parameter.find((p) => p.name === 'type')?.valueCode).toBe('query-status');
    await waitFor('audited sends', async () =>
      (await auditCount(a, 'notification.sent', `%${id}%`)) === 4 ? true : undefined,
    );
    expect(await auditCount(a, 'subscription.created', `%${id}%`)).toBe(1);
  });

  it('a heartbeat goes to an active subscription that has been sent nothing for its period', async () => {
    const { a } = gws;
    const ehr = await ehrClient(a);
    const id = await activeSubscription(a, ehr, hook, {
      channel: {
        ...(subscription(topicOf(a), hook.url).channel as object),
        extension: [{ url: `${BACKPORT}/backport-heartbeat-period`, valueUnsignedInt: 1 }],
      },
    });
    const read = await readSubscription(a, ehr, id);
    expect(read.body.channel.extension).toEqual([
      { url: `${BACKPORT}/backport-heartbeat-period`, valueUnsignedInt: 1 },
    ]);
    await new Promise((r) => setTimeout(r, 1_100));
    // The cron line runs every minute; the test runs the same task at once.
    await a.gw.app.ctx.queue.addJob(SUBSCRIPTION_HEARTBEAT_TASK, {});
    const beat = await waitFor('heartbeat', async () =>
      hook.of(id).find((n) => param(n, 'type')?.valueCode === 'heartbeat'),
    );
    expect(r4Errors(beat)).toEqual([]);
    expect(param(beat, 'events-since-subscription-start')?.valueString).toBe('0');
    expect(param(beat, 'notification-event')).toBeUndefined();
    expect(beat.entry).toHaveLength(1);
  });

  it('a subscriber that is down gets the notification later by retry, after a worker restart', async () => {
    const { a, b } = gws;
    const ehr = await ehrClient(a);
    const id = await activeSubscription(a, ehr, hook);
    hook.down = (n) => param(n, 'subscription')?.valueReference?.reference.endsWith(`/${id}`) === true;
    const exchange = await send(a, ehr, order(b.gw.config.org, randomUUID()));
    await waitFor('an attempt refused', async () => {
      const { rows } = await a.gw.app.ctx.pool.query<{ attempts: number }>(
        `SELECT attempts FROM exchange_notifications WHERE subscription_id = $1 AND type = 'event-notification' AND state = 'pending'`,
        [id],
      );
      return rows[0] && rows[0].attempts >= 1 ? true : undefined;
    });
    // The notification is a row and a job: a new worker takes it over.
    await a.worker?.stop();
    hook.down = () => false;
    a.worker = await startWorker(a.gw.app.ctx);
    const n = await waitFor('the event after the restart', async () => hook.events(id)[0]);
    expect(focusOf(n)).toBe(`${a.gw.config.baseUrl}/fhir/Task/${exchange}`);
    expect(part(n, 'event-number')?.valueString).toBe('1');
    const row = await waitFor('sent', async () => {
      const { rows } = await a.gw.app.ctx.pool.query<{ state: string; attempts: number }>(
        `SELECT state, attempts FROM exchange_notifications WHERE subscription_id = $1 AND type = 'event-notification'`,
        [id],
      );
      return rows[0]?.state === 'sent' ? rows[0] : undefined;
    });
    expect(row.attempts).toBeGreaterThanOrEqual(2);
  });

  it('a filter narrows the topic to one exchange; update turns it off, search shows only its own, delete ends it', async () => {
    const { a, b } = gws;
    const ehr = await ehrClient(a);
    const other = await ehrClient(a);
    const first = await send(a, ehr, order(b.gw.config.org, randomUUID()));
    const filtered = {
      _criteria: {
        extension: [{ url: `${BACKPORT}/backport-filter-criteria`, valueString: `Task?_id=${first}&event=processed` }],
      },
    };
    const id = await activeSubscription(a, ehr, hook, filtered);
    const second = await send(a, ehr, order(b.gw.config.org, randomUUID()));
    // Another client's exchanges never reach it either.
    const theirsToo = await send(a, other, order(b.gw.config.org, randomUUID()));
    const read = await readSubscription(a, ehr, id);
    // Read back in its canonical form: one filter per extension.
    expect(read.body._criteria.extension.map((e: { valueString: string }) => e.valueString)).toEqual([
      `Task?_id=${first}`,
      'Task?event=processed',
    ]);
    await waitFor('all three delivered', async () => {
      const { rows } = await a.gw.app.ctx.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM exchange_events WHERE kind = 'delivered' AND exchange_id = ANY ($1::uuid[])`,
        [[first, second, theirsToo]],
      );
      return rows[0]!.n === 3 ? true : undefined;
    });
    // Their notifications were due on the same transactions as the events: none was written for this subscription.
    const { rows: owed } = await a.gw.app.ctx.pool.query(
      'SELECT 1 FROM exchange_notifications WHERE subscription_id = $1 AND event_id IS NOT NULL',
      [id],
    );
    expect(owed).toEqual([]);
    expect(hook.events(id)).toEqual([]);

    const put = await request(a.gw.app.server)
      .put(`/fhir/Subscription/${id}`)
      .set({ authorization: await ehr.bearer(), 'content-type': 'application/fhir+json' })
      .send(JSON.stringify({ ...subscription(topicOf(a), hook.url), id, status: 'off' }));
    expect(put.status).toBe(200);
    expect(put.body.status).toBe('off');
    expect(put.body.meta.versionId).not.toBe(read.body.meta.versionId);

    const mine = await request(a.gw.app.server)
      .get('/fhir/Subscription')
      .set('authorization', await ehr.bearer());
    expect(mine.status, JSON.stringify(mine.body)).toBe(200);
    expect(r4Errors(mine.body)).toEqual([]);
    expect(mine.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([id]);
    const theirs = await request(a.gw.app.server)
      .post('/fhir/Subscription/_search')
      .set({ authorization: await other.bearer(), 'content-type': 'application/x-www-form-urlencoded' })
      .send('status=off');
    expect(theirs.status, JSON.stringify(theirs.body)).toBe(200);
    expect(theirs.body.entry).toBeUndefined();

    await request(a.gw.app.server)
      .delete(`/fhir/Subscription/${id}`)
      .set('authorization', await ehr.bearer())
      .expect(204);
    expect((await readSubscription(a, ehr, id)).status).toBe(404);
    expect(await auditCount(a, 'subscription.updated', `%${id}%`)).toBe(1);
    expect(await auditCount(a, 'subscription.deleted', `%${id}%`)).toBe(1);
  });

  it('an imaging submission takes a response-url too: its delivered and processed reach both channels, and its focus is a Task', async () => {
    const { a, b } = gws;
    const ehr = await ehrClient(a);
    const id = await activeSubscription(a, ehr, hook);
    const notify = `${hook.url}?imaging`;
    const res = await request(a.gw.app.server)
      .post(`/imaging?recipient=${encodeURIComponent(b.gw.config.org)}&response-url=${encodeURIComponent(notify)}`)
      .set({ authorization: await ehr.bearer(), 'content-type': 'application/dicom' })
      .send(readFileSync(DICOM_FIXTURES[0]!));
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const exchange = (res.headers.location as string).split('/').pop()!;
    const task = `${a.gw.config.baseUrl}/fhir/Task/${exchange}`;
    await waitFor('delivered event', async () => (hook.events(id).length >= 1 ? true : undefined));
    const { rows } = await a.gw.app.ctx.pool.query<{ id: string }>(
      'SELECT id FROM imaging_deliveries WHERE exchange_id = $1',
      [exchange],
    );
    const atB = await waitFor('the study in B inbox', async () => {
      const list = await request(b.gw.app.server)
        .get('/inbox/messages?_count=1000')
        .set('authorization', await b.ehr.bearer());
      return (list.body.messages as Array<{ id: string; delivery: string }>).find((m) => m.delivery === rows[0]!.id);
    });
    await request(b.gw.app.server)
      .post(`/inbox/messages/${atB.id}/$ack`)
      .set('authorization', await b.ehr.bearer())
      .expect(200);
    await waitFor('processed event', async () => (hook.events(id).length >= 2 ? true : undefined));
    expect(hook.events(id).map(kindOf)).toEqual(['delivered', 'processed']);
    for (const n of hook.events(id)) expect(focusOf(n)).toBe(task);

    // The same two by response-url, as id-only response messages.
    const notices = await waitFor('two response messages', async () => {
      const got = hook.received.filter((n) => n.type === 'message' && JSON.stringify(n).includes(`/Task/${exchange}`));
      return got.length >= 2 ? got : undefined;
    });
    for (const n of notices) {
      expect(r4Errors(n)).toEqual([]);
      const header = n.entry[0]!.resource as unknown as {
        focus: Array<{ reference: string }>;
        response: { code: string };
      };
      expect(header.focus).toEqual([{ reference: task }]);
      expect(header.response.code).toBe('ok');
    }
    const view = await request(a.gw.app.server)
      .get(`/fhir/Task/${exchange}`)
      .set('authorization', await ehr.bearer())
      .expect(200);
    expect(r4Errors(view.body)).toEqual([]);
    expect(view.body.code.text).toMatch(/^send a DICOM study of 1 instance/);
    expect(view.body.status).toBe('completed');
    // Only its owner reads it.
    const stranger = await ehrClient(a);
    await request(a.gw.app.server)
      .get(`/fhir/Task/${exchange}`)
      .set('authorization', await stranger.bearer())
      .expect(404);
    // And a response-url the endpoint rule refuses is refused here too.
    const bad = await request(a.gw.app.server)
      .post(
        `/imaging?recipient=${encodeURIComponent(b.gw.config.org)}&response-url=${encodeURIComponent('http://10.0.0.7/x')}`,
      )
      .set({ authorization: await ehr.bearer(), 'content-type': 'application/dicom' })
      .send(readFileSync(DICOM_FIXTURES[0]!));
    expect(bad.status).toBe(400);
    expect(bad.body.resourceType).toBe('OperationOutcome');
  });

  it('SMART scopes: v2 system/Subscription.cruds and v1 .read/.write both reach it; .read alone cannot subscribe', async () => {
    const { a } = gws;
    const body = subscription(topicOf(a), hook.url);
    const v2 = await testClient(a.gw, { scopes: ['system/Subscription.cruds'] });
    const made = await subscribe(a, v2, body);
    expect(made.status).toBe(201);
    expect((await readSubscription(a, v2, made.body.id)).status).toBe(200);
    const v1 = await testClient(a.gw, { scopes: ['system/Subscription.read', 'system/Subscription.write'] });
    const also = await subscribe(a, v1, body);
    expect(also.status).toBe(201);
    await request(a.gw.app.server)
      .delete(`/fhir/Subscription/${also.body.id}`)
      .set('authorization', await v1.bearer())
      .expect(204);
    const reader = await testClient(a.gw, { scopes: ['system/Subscription.read'] });
    expect((await subscribe(a, reader, body)).status).toBe(403);
    const listed = await request(a.gw.app.server)
      .get('/fhir/Subscription')
      .set('authorization', await reader.bearer());
    expect(listed.status).toBe(200);
    expect(listed.body.entry).toBeUndefined();
  });

  it('refuses what it cannot honour with a 4xx OperationOutcome, audited: channel, endpoint, topic, payload, scope, another client', async () => {
    const { a } = gws;
    const ehr = await ehrClient(a);
    const topic = topicOf(a);
    const base = subscription(topic, hook.url);
    const channel = base.channel as Record<string, unknown>;
    const before = await auditCount(a, 'subscription.refused');
    const cases: Array<[string, unknown, number, RegExp]> = [
      ['websocket', { ...base, channel: { ...channel, type: 'websocket' } }, 422, /rest-hook/],
      ['email', { ...base, channel: { ...channel, type: 'email' } }, 422, /rest-hook/],
      ['plain http', { ...base, channel: { ...channel, endpoint: 'http://10.0.0.7/hook' } }, 400, /https/],
      [
        'credentials',
        { ...base, channel: { ...channel, endpoint: 'https://u:p@ehr.example/hook' } },
        400,
        /credentials/,
      ],
      ['unknown topic', { ...base, criteria: 'http://example.org/SubscriptionTopic/admission' }, 422, /unknown topic/],
      [
        'full-resource',
        {
          ...base,
          channel: {
            ...channel,
            _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: 'full-resource' }] },
          },
        },
        422,
        /full-resource/,
      ],
      [
        'unknown filter',
        {
          ...base,
          _criteria: { extension: [{ url: `${BACKPORT}/backport-filter-criteria`, valueString: 'Task?patient=1' }] },
        },
        422,
        /filtered/,
      ],
      ['not R4', { ...base, status: 'sideways' }, 422, /./],
    ];
    for (const [label, body, code, why] of cases) {
      const res = await subscribe(a, ehr, body);
      expect(res.status, label).toBe(code);
      expect(res.body.resourceType, label).toBe('OperationOutcome');
      expect(r4Errors(res.body), label).toEqual([]);
      expect(JSON.stringify(res.body.issue), label).toMatch(why);
    }

    // Wrong scope: an EHR that may send bundles but not subscribe.
    const sender = await testClient(a.gw, { scopes: [SCOPE_BUNDLE_WRITE] });
    const denied = await subscribe(a, sender, base);
    expect(denied.status).toBe(403);
    expect(denied.body.resourceType).toBe('OperationOutcome');
    expect(await auditCount(a, 'authz.denied', `%${sender.id}%`)).toBeGreaterThanOrEqual(1);

    // Another client's subscription does not exist for it: read, update, delete and $status.
    const id = await activeSubscription(a, ehr, hook);
    const stranger = await ehrClient(a);
    const auth = { authorization: await stranger.bearer() };
    const app = a.gw.app.server;
    const methods = ['GET', 'GET $status', 'PUT', 'DELETE'];
    for (const [i, res] of [
      await request(app).get(`/fhir/Subscription/${id}`).set(auth),
      await request(app).get(`/fhir/Subscription/${id}/$status`).set(auth),
      await request(app)
        .put(`/fhir/Subscription/${id}`)
        .set({ ...auth, 'content-type': 'application/fhir+json' })
        .send(JSON.stringify({ ...base, id })),
      await request(app).delete(`/fhir/Subscription/${id}`).set(auth),
    ].entries()) {
      expect(res.status, methods[i]).toBe(404);
      expect(res.body.resourceType).toBe('OperationOutcome');
    }
    expect((await readSubscription(a, ehr, id)).body.status).toBe('active');
    await waitFor('every refusal audited', async () =>
      (await auditCount(a, 'subscription.refused')) - before >= cases.length + 4 ? true : undefined,
    );
  });
});

describe('a delivery that passes DELIVERY_HORIZON', () => {
  let gws: TwoGateways;
  const hook = new Hook();
  beforeAll(async () => {
    await hook.start();
    // Attempts to spare: the round ends because its time is spent, not its attempts.
    gws = await startTwoGateways({ DELIVERY_HORIZON: '2s', DELIVERY_MAX_ATTEMPTS: '100' });
  });
  afterAll(async () => {
    await gws?.close();
    await new Promise((r) => hook.server?.close(r));
  });

  it('produces the non-delivery notice at the response-url and an expired event for the subscription', async () => {
    const { a, b } = gws;
    const ehr = await ehrClient(a);
    const id = await activeSubscription(a, ehr, hook, {
      _criteria: {
        extension: [{ url: `${BACKPORT}/backport-filter-criteria`, valueString: 'Task?event=failed,expired' }],
      },
    });
    // One delivery first, so A holds B's keys; then B goes away for good.
    const warm = await send(a, ehr, order(b.gw.config.org, randomUUID()));
    await waitFor('the first delivery', async () => {
      const { rows } = await a.gw.app.ctx.pool.query('SELECT 1 FROM deliveries WHERE exchange_id = $1 AND state = $2', [
        warm,
        'delivered',
      ]);
      return rows.length ? true : undefined;
    });
    await b.worker?.stop();
    await b.gw.close();
    const headerId = randomUUID();
    const exchange = await send(
      a,
      ehr,
      order(b.gw.config.org, headerId),
      `?response-url=${encodeURIComponent(`${hook.url}?response-url`)}`,
    );
    const notice = await waitFor(
      'non-delivery notice',
      async () => hook.received.find((n) => n.type === 'message' && JSON.stringify(n).includes(exchange)),
      30_000,
    );
    expect(r4Errors(notice)).toEqual([]);
    const header = notice.entry[0]!.resource as unknown as {
      response: { identifier: string; code: string; details: { reference: string } };
      extension: Array<{ url: string; valueCode?: string }>;
    };
    expect(header.response.identifier).toBe(headerId);
    expect(header.response.code).toBe('fatal-error');
    expect(header.extension.find((e) => e.url.endsWith(':state'))?.valueCode).toBe('expired');
    const outcome = notice.entry.find((e) => e.fullUrl === header.response.details.reference)!.resource as unknown as {
      resourceType: string;
      issue: Array<{ severity: string; code: string; diagnostics: string }>;
    };
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0]).toMatchObject({ severity: 'fatal', code: 'timeout' });
    expect(outcome.issue[0]!.diagnostics).toMatch(/delivery horizon/);

    const expired = await waitFor('the expired event', async () => hook.events(id)[0]);
    expect(r4Errors(expired)).toEqual([]);
    expect(kindOf(expired)).toBe('expired');
    expect(focusOf(expired)).toBe(`${a.gw.config.baseUrl}/fhir/Task/${exchange}`);
    expect(hook.events(id)).toHaveLength(1);
    // The delivery was given up for time, with attempts to spare, and says so in the audit.
    const { rows } = await a.gw.app.ctx.pool.query<{ attempts: number; entry: string }>(
      `SELECT d.attempts, l.entry FROM deliveries d JOIN audit_log l ON l.type = 'delivery.failed' AND l.entry LIKE '%' || d.id || '%'
        WHERE d.exchange_id = $1`,
      [exchange],
    );
    expect(rows[0]!.attempts).toBeLessThan(100);
    expect(rows[0]!.entry).toContain('expired');
  });
});

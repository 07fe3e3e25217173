import { randomUUID } from 'node:crypto';
import request from 'supertest';
import type { JWK } from 'jose';
import { startTestGateway, type TestGateway } from './gateway.ts';
import { testClient, type TestClient } from './auth.ts';
import { startTestRecipient, type TestRecipient } from './recipient.ts';
import { startWorker, type WorkerHandle } from '../../src/worker/runner.ts';
import { SCOPE_ADMIN, SCOPE_ALL_READ, SCOPE_BUNDLE_WRITE } from '../../src/auth/scopes.ts';

export interface Outbound {
  gw: TestGateway;
  ehr: TestClient;
  admin: TestClient;
  ehrAuth: string;
  adminAuth: string;
  recipients: TestRecipient[];
  worker?: WorkerHandle;
  startWorker(): Promise<WorkerHandle>;
  addPartner(r: TestRecipient): Promise<void>;
  close(): Promise<void>;
}

/** A sending gateway, an EHR client, an admin client and `n` jose-based test recipients registered as partners. */
export async function startOutbound(
  env: Record<string, string> = {},
  n = 2,
  options: { worker?: boolean } = {},
): Promise<Outbound> {
  const gw = await startTestGateway({
    DELIVERY_RETRY_BASE: '100ms',
    DELIVERY_RETRY_MAX: '500ms',
    DELIVERY_TIMEOUT: '2s',
    ...env,
  });
  const ehr = await testClient(gw, { scopes: [SCOPE_BUNDLE_WRITE, SCOPE_ALL_READ] });
  const admin = await testClient(gw, { scopes: [SCOPE_ADMIN] });
  const ehrAuth = await ehr.bearer();
  const adminAuth = await admin.bearer();
  const senderJwks = async () => gw.app.ctx.keyring.jwks() as unknown as { keys: JWK[] };
  const recipients: TestRecipient[] = [];
  for (let i = 0; i < n; i++) recipients.push(await startTestRecipient({ senderId: gw.config.org, senderJwks }));
  const o: Outbound = {
    gw,
    ehr,
    admin,
    ehrAuth,
    adminAuth,
    recipients,
    startWorker: async () => (o.worker = await startWorker(gw.app.ctx)),
    addPartner: async (r) => {
      await request(gw.app.server)
        .post('/admin/partners')
        .set('authorization', adminAuth)
        .send({ id: r.id, name: `partner ${r.id}`, endpoint: r.inbox, jwks_uri: r.jwksUri })
        .expect(201);
    },
    close: async () => {
      await o.worker?.stop();
      await gw.close();
      for (const r of recipients) await r.close();
    },
  };
  for (const r of recipients) await o.addPartner(r);
  if (options.worker !== false) await o.startWorker();
  return o;
}

/** A message Bundle to the given partners (matched by receiver.identifier.value), padded to about `bytes`. */
export function messageBundle(partnerIds: string[], bytes = 2_000, note = 'test'): string {
  const bundle = {
    resourceType: 'Bundle',
    type: 'message',
    entry: [
      {
        fullUrl: 'urn:uuid:0c3a3e3a-1f1e-4c8e-9b1a-3c5d7e9f1a2b',
        resource: {
          resourceType: 'MessageHeader',
          eventCoding: { system: 'urn:example:events', code: 'referral' },
          destination: partnerIds.map((id) => ({ endpoint: `${id}/inbox`, receiver: { identifier: { value: id } } })),
          source: { endpoint: 'urn:example:ehr' },
          focus: [{ reference: 'urn:uuid:5d1c1a1e-2b3c-4d5e-8f90-a1b2c3d4e5f6' }],
        },
      },
      {
        fullUrl: 'urn:uuid:5d1c1a1e-2b3c-4d5e-8f90-a1b2c3d4e5f6',
        resource: {
          resourceType: 'Patient',
          name: [{ family: 'Doe', given: ['Jane'] }],
          text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${note}</div>` },
        },
      },
    ],
  };
  let text = JSON.stringify(bundle, null, 1);
  const pad = bytes - text.length;
  if (pad > 0) {
    (bundle.entry[1]!.resource as { text: { div: string } }).text.div =
      `<div xmlns="http://www.w3.org/1999/xhtml">${note}${'x'.repeat(pad)}</div>`;
    text = JSON.stringify(bundle, null, 1);
  }
  return text;
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 20_000,
  everyMs = 100,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The exchange view once every recipient has left 'pending' (or the predicate holds). */
export async function settled(
  o: Outbound,
  location: string,
  pred = (v: { recipients: Array<{ state: string }> }) => v.recipients.every((r) => r.state !== 'pending'),
  timeoutMs = 20_000,
) {
  return waitFor(
    `exchange ${location} to settle`,
    async () => {
      const res = await request(o.gw.app.server).get(location).set('authorization', o.ehrAuth);
      return res.status === 200 && pred(res.body) ? res.body : undefined;
    },
    timeoutMs,
  );
}

export async function countRows(o: Outbound): Promise<Record<string, number>> {
  const { rows } = await o.gw.app.ctx.pool.query(
    `SELECT (SELECT count(*) FROM exchanges)::int AS exchanges, (SELECT count(*) FROM deliveries)::int AS deliveries,
            (SELECT count(*) FROM graphile_worker._private_jobs)::int AS jobs, (SELECT count(*) FROM delivery_attempts)::int AS attempts`,
  );
  return rows[0];
}

/** A message to `to` whose MessageHeader.id is `id` (what a response names it by), with an event code. */
export function orderMessage(to: string, id: string, event = 'referral'): string {
  const b = JSON.parse(messageBundle([to], 800, `order ${id}`)) as {
    entry: Array<{ resource: Record<string, unknown> }>;
  };
  Object.assign(b.entry[0]!.resource, { id, eventCoding: { system: 'urn:example:events', code: event } });
  return JSON.stringify(b);
}

/** A response message (MessageHeader.response) to the message whose MessageHeader.id is `answers`, as the receiving EHR posts it. */
export function responseMessageTo(
  answers: string,
  code: 'ok' | 'transient-error' | 'fatal-error' = 'ok',
  id: string = randomUUID(),
): string {
  return JSON.stringify({
    resourceType: 'Bundle',
    type: 'message',
    entry: [
      {
        fullUrl: `urn:uuid:${id}`,
        resource: {
          resourceType: 'MessageHeader',
          id,
          eventCoding: { system: 'urn:example:events', code: 'referral-response' },
          source: { endpoint: 'urn:example:ehr-b' },
          response: { identifier: answers, code },
        },
      },
    ],
  });
}

import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { parseSubscription, subscriptionResource } from '../../src/notify/subscription.ts';
import { notificationBundle } from '../../src/notify/subscription-status.ts';
import { exchangeStateTopic, formatTopicFilter, parseTopicFilter } from '../../src/notify/topic.ts';
import { r4Errors } from '../helpers/r4-validator.ts';

const BASE = 'https://gw.example/fhir';
const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';
const EXCHANGE = '01a23641-3ed6-7e6c-b4b3-c1e6b01458dc';

function posted(more: Record<string, unknown> = {}, channel: Record<string, unknown> = {}) {
  return {
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'exchange state',
    criteria: exchangeStateTopic(BASE),
    channel: {
      type: 'rest-hook',
      endpoint: 'https://ehr.example/hook',
      payload: 'application/fhir+json',
      _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: 'id-only' }] },
      ...channel,
    },
    ...more,
  };
}

const refusal = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    if (e instanceof GatewayError) return `${e.status} ${e.message}`;
    throw e;
  }
  return 'accepted';
};

describe('the exchange-state topic filter', () => {
  it('reads _id and event, ANDed across values, and writes them back one per value', () => {
    const f = parseTopicFilter([`Task?_id=${EXCHANGE}`, 'Task?event=failed,expired&event=failed']);
    expect(f).toEqual({ exchange: EXCHANGE, events: ['failed', 'expired'] });
    expect(formatTopicFilter(f)).toEqual([`Task?_id=${EXCHANGE}`, 'Task?event=failed,expired']);
    expect(parseTopicFilter([])).toEqual({ exchange: null, events: null });
  });

  it('refuses what it would otherwise ignore', () => {
    expect(refusal(() => parseTopicFilter(['Task?patient=1']))).toMatch(/^422 .*cannot be filtered by patient/);
    expect(refusal(() => parseTopicFilter(['Task?event=sent']))).toMatch(/^422 unknown event sent/);
    expect(refusal(() => parseTopicFilter(['Task?_id=abc']))).toMatch(/^422 /);
    expect(refusal(() => parseTopicFilter([`Task?_id=${EXCHANGE}`, 'Task?_id=' + EXCHANGE.replace('0', '1')]))).toMatch(
      /^422 /,
    );
    expect(refusal(() => parseTopicFilter(['Encounter?_id=1']))).toMatch(/^422 /);
  });
});

describe('a posted Subscription', () => {
  it('is checked into its stored form, which renders as valid R4 claiming the backport profile', () => {
    const heartbeat = { extension: [{ url: `${BACKPORT}/backport-heartbeat-period`, valueUnsignedInt: 60 }] };
    const s = parseSubscription(posted({}, heartbeat), BASE);
    expect(s).toEqual({
      status: 'requested',
      reason: 'exchange state',
      endpoint: 'https://ehr.example/hook',
      payloadContent: 'id-only',
      heartbeatSeconds: 60,
      filter: { exchange: null, events: null },
    });
    const r = subscriptionResource(
      {
        ...s,
        id: EXCHANGE,
        clientId: 'c',
        status: 'active',
        eventsSinceStart: 0,
        error: null,
        version: 2,
        updatedAt: new Date(),
      },
      BASE,
    );
    expect(r4Errors(r)).toEqual([]);
    expect(r.meta?.profile).toEqual([`${BACKPORT}/backport-subscription`]);
    expect(r.channel.extension).toEqual(heartbeat.extension);
  });

  it('is refused, with the reason, when the gateway cannot honour it', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ resourceType: 'Patient' }, /^422 the body must be a Subscription/],
      [posted({ criteria: 'https://other.example/fhir/SubscriptionTopic/exchange-state' }), /^422 unknown topic/],
      [posted({}, { type: 'websocket' }), /^422 channel type websocket is not supported/],
      [posted({}, { endpoint: 'http://192.168.1.9/hook' }), /^400 .*https/],
      [posted({}, { header: ['Authorization: Bearer x'] }), /^422 channel.header is not supported/],
      [posted({}, { payload: 'application/fhir+xml' }), /^422 channel.payload must be application\/fhir\+json/],
      [posted({}, { _payload: undefined }), /^422 give one backport-payload-content/],
      [
        posted(
          {},
          { _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: 'full-resource' }] } },
        ),
        /^422 payload content full-resource is not offered/,
      ],
      [
        posted({}, { extension: [{ url: `${BACKPORT}/backport-heartbeat-period`, valueUnsignedInt: 0 }] }),
        /^422 the heartbeat period/,
      ],
      [posted({ end: '2030-01-01T00:00:00Z' }), /^422 Subscription.end is not supported/],
      [posted({ status: 'error' }), /^422 a client may ask for status requested or off/],
    ];
    for (const [body, why] of cases) expect(refusal(() => parseSubscription(body, BASE))).toMatch(why);
    expect(parseSubscription(posted({ status: 'off' }), BASE).status).toBe('off');
    expect(parseSubscription(posted({ status: 'active' }), BASE).status).toBe('requested');
  });
});

describe('a notification', () => {
  const status = {
    id: '3b1c0c39-5a57-4c6e-9d1e-0a4b2d6f7e10',
    subscriptionId: EXCHANGE,
    status: 'active' as const,
    type: 'event-notification' as const,
    eventsSinceStart: 7,
    event: { number: 7, at: new Date('2026-12-02T10:00:00Z'), exchangeId: EXCHANGE, kind: 'delivered' as const },
    fhirBase: BASE,
  };

  it('id-only: the status, then the focus by its URL with no resource; valid R4', () => {
    const b = notificationBundle({ ...status, payloadContent: 'id-only' }, new Date());
    expect(r4Errors(b)).toEqual([]);
    expect(b.type).toBe('history');
    expect(b.entry).toHaveLength(2);
    expect(b.entry?.[1]).toEqual({
      fullUrl: `${BASE}/Task/${EXCHANGE}`,
      request: { method: 'GET', url: `Task/${EXCHANGE}` },
      response: { status: '200' },
    });
  });

  it('empty: the status only, with the event number and no focus; valid R4', () => {
    const b = notificationBundle({ ...status, payloadContent: 'empty' }, new Date());
    expect(r4Errors(b)).toEqual([]);
    expect(b.entry).toHaveLength(1);
    const text = JSON.stringify(b);
    expect(text).not.toContain(`Task/${EXCHANGE}`);
    expect(text).toContain('"event-number","valueString":"7"');
  });
});

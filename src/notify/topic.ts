import { GatewayError } from '../errors.ts';
import { isUuid } from '../ids.ts';
import type { ExchangeEventKind } from '../outbound/exchange-events.ts';

/** The R4 Backport IG's canonical base: its extensions and profiles. */
const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';

export const BACKPORT_EXT = {
  filterCriteria: `${BACKPORT}/backport-filter-criteria`,
  payloadContent: `${BACKPORT}/backport-payload-content`,
  heartbeatPeriod: `${BACKPORT}/backport-heartbeat-period`,
} as const;

export const BACKPORT_PROFILE = {
  subscription: `${BACKPORT}/backport-subscription`,
  status: `${BACKPORT}/backport-subscription-status-r4`,
  notification: `${BACKPORT}/backport-subscription-notification-r4`,
} as const;

/**
 * The one topic the gateway offers: the state of the client's own exchanges.
 * In R4 a topic is named by its canonical URL (there is no SubscriptionTopic
 * resource); this one is owned by the gateway, under its FHIR base.
 */
export const exchangeStateTopic = (fhirBase: string) => `${fhirBase}/SubscriptionTopic/exchange-state`;

/** The topic's events: every exchange state change recorded by src/outbound/exchange-events.ts. */
export const TOPIC_EVENTS: readonly ExchangeEventKind[] = [
  'delivered',
  'processed',
  'response-received',
  'failed',
  'expired',
];

/** What a subscription narrows the topic to: one exchange, some events, or both (null: no narrowing). */
export interface TopicFilter {
  exchange: string | null;
  events: ExchangeEventKind[] | null;
}

/**
 * The backport-filter-criteria values, each `Task?<name>=<value>` (several
 * are ANDed): `_id` names one exchange (its Task), `event` a comma list of
 * the topic's events. Anything else is refused: a filter the gateway would
 * silently ignore would send what the subscriber did not ask for.
 */
export function parseTopicFilter(values: readonly string[]): TopicFilter {
  const filter: TopicFilter = { exchange: null, events: null };
  for (const value of values) {
    const m = /^Task\?(.+)$/.exec(value);
    if (!m) throw unprocessable(`filter criteria must read Task?_id=<exchange> or Task?event=<events>: ${value}`);
    for (const [name, v] of new URLSearchParams(m[1])) {
      if (name === '_id') {
        if (!isUuid(v) || (filter.exchange !== null && filter.exchange !== v))
          throw unprocessable('the _id filter names one exchange by its id');
        filter.exchange = v;
      } else if (name === 'event') {
        const events = v.split(',');
        const unknown = events.find((e) => !TOPIC_EVENTS.includes(e as ExchangeEventKind));
        if (unknown !== undefined)
          throw unprocessable(`unknown event ${unknown}: the topic's events are ${TOPIC_EVENTS.join(', ')}`);
        filter.events = [...new Set([...(filter.events ?? []), ...(events as ExchangeEventKind[])])];
      } else throw unprocessable(`the topic cannot be filtered by ${name} (only _id and event)`);
    }
  }
  return filter;
}

/** The filter back as filter criteria, in the form it is accepted in. */
export function formatTopicFilter(f: TopicFilter): string[] {
  return [
    ...(f.exchange ? [`Task?_id=${f.exchange}`] : []),
    ...(f.events?.length ? [`Task?event=${f.events.join(',')}`] : []),
  ];
}

const unprocessable = (message: string) =>
  new GatewayError('UNPROCESSABLE', message, { expression: 'Subscription.criteria' });

import type { Bundle, BundleEntry, Parameters, ParametersParameter } from 'fhir/r4.js';
import type { ExchangeEventKind } from '../outbound/exchange-events.ts';
import { EXCHANGE_STATE_EVENT } from './notice.ts';
import { BACKPORT_PROFILE, exchangeStateTopic } from './topic.ts';
import type { PayloadContent, SubscriptionStatus } from './subscription.ts';

export type NotificationType = 'handshake' | 'heartbeat' | 'event-notification';

/** What a SubscriptionStatus says: the subscription, why it is sent, its count, and the one event it carries. */
export interface StatusInput {
  id: string;
  subscriptionId: string;
  status: SubscriptionStatus;
  type: NotificationType | 'query-status';
  eventsSinceStart: number;
  payloadContent: PayloadContent;
  /** An event notification's one event: its number, when it happened, and the exchange it is about. */
  event?: { number: number; at: Date; exchangeId: string; kind: ExchangeEventKind } | undefined;
  fhirBase: string;
}

const subscriptionUrl = (s: StatusInput) => `${s.fhirBase}/Subscription/${s.subscriptionId}`;
const taskPath = (exchangeId: string) => `Task/${exchangeId}`;

/**
 * The R4 SubscriptionStatus (backport-subscription-status-r4): a Parameters
 * resource. Counts are strings (R4 has no integer64). An id-only event names
 * the exchange's Task as its focus; an empty one names nothing. Each event
 * says which state change it was (an extension, the same code the
 * response-url notice carries), so a subscriber need not read the Task to
 * tell delivered from failed.
 */
export function subscriptionStatus(s: StatusInput): Parameters {
  const parameter: ParametersParameter[] = [
    { name: 'subscription', valueReference: { reference: subscriptionUrl(s) } },
    { name: 'topic', valueCanonical: exchangeStateTopic(s.fhirBase) },
    { name: 'status', valueCode: s.status },
    { name: 'type', valueCode: s.type },
    { name: 'events-since-subscription-start', valueString: String(s.eventsSinceStart) },
  ];
  if (s.event)
    parameter.push({
      name: 'notification-event',
      extension: [{ url: `${EXCHANGE_STATE_EVENT}:state`, valueCode: s.event.kind }],
      part: [
        { name: 'event-number', valueString: String(s.event.number) },
        { name: 'timestamp', valueInstant: s.event.at.toISOString() },
        ...(s.payloadContent === 'id-only'
          ? [{ name: 'focus', valueReference: { reference: `${s.fhirBase}/${taskPath(s.event.exchangeId)}` } }]
          : []),
      ],
    });
  return { resourceType: 'Parameters', id: s.id, meta: { profile: [BACKPORT_PROFILE.status] }, parameter };
}

/**
 * One notification as the backport sends it: a history Bundle whose first
 * entry is the SubscriptionStatus, then (id-only) an entry naming the focus
 * by its URL with no resource: the subscriber reads it with its own token.
 */
export function notificationBundle(s: StatusInput, at: Date): Bundle {
  const entry: BundleEntry[] = [
    {
      fullUrl: `urn:uuid:${s.id}`,
      resource: subscriptionStatus(s),
      request: { method: 'GET', url: `${subscriptionUrl(s)}/$status` },
      response: { status: '200' },
    },
  ];
  if (s.event && s.payloadContent === 'id-only')
    entry.push({
      fullUrl: `${s.fhirBase}/${taskPath(s.event.exchangeId)}`,
      request: { method: 'GET', url: taskPath(s.event.exchangeId) },
      response: { status: '200' },
    });
  return {
    resourceType: 'Bundle',
    id: s.id,
    meta: { profile: [BACKPORT_PROFILE.notification] },
    type: 'history',
    timestamp: at.toISOString(),
    entry,
  };
}

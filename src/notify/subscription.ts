import type { Subscription } from 'fhir/r4.js';
import { GatewayError } from '../errors.ts';
import { r4Issues } from '../fhir/r4-validate.ts';
import { checkNotifyEndpoint } from './endpoint.ts';
import {
  BACKPORT_EXT,
  BACKPORT_PROFILE,
  exchangeStateTopic,
  formatTopicFilter,
  parseTopicFilter,
  type TopicFilter,
} from './topic.ts';

export type SubscriptionStatus = 'requested' | 'active' | 'error' | 'off';
export type PayloadContent = 'id-only' | 'empty';

/** What a client asks for, checked: the stored form of its Subscription. */
export interface SubscriptionRequest {
  /** requested (a handshake follows) or off. */
  status: 'requested' | 'off';
  reason: string;
  endpoint: string;
  payloadContent: PayloadContent;
  heartbeatSeconds: number | null;
  filter: TopicFilter;
}

/** A stored subscription, as the store reads it. */
export interface StoredSubscription extends Omit<SubscriptionRequest, 'status'> {
  id: string;
  clientId: string;
  status: SubscriptionStatus;
  eventsSinceStart: number;
  error: string | null;
  version: number;
  updatedAt: Date;
}

/** At most a day between heartbeats; the sweep looks every minute, so shorter periods are met to the minute. */
const MAX_HEARTBEAT_SECONDS = 86_400;
const MAX_REASON = 1000;

type Extended = {
  extension?: Array<{ url?: string; valueString?: string; valueCode?: string; valueUnsignedInt?: number }>;
};

const extensionsOf = (e: Extended | undefined, url: string) => (e?.extension ?? []).filter((x) => x.url === url);

const unprocessable = (message: string, expression: string) =>
  new GatewayError('UNPROCESSABLE', message, { expression });

/**
 * A posted Subscription (R4, Backport IG's R4 profile) checked into what is
 * stored: valid R4, the exchange-state topic, rest-hook to an endpoint the
 * response-url rule allows, an application/fhir+json payload of `id-only` or
 * `empty`, an optional heartbeat and filter. What the gateway cannot honour
 * is refused (422) rather than ignored.
 */
export function parseSubscription(body: unknown, fhirBase: string): SubscriptionRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new GatewayError('INVALID_FHIR', 'the body must be a Subscription resource');
  const r = body as Record<string, unknown>;
  if (r.resourceType !== 'Subscription')
    throw new GatewayError('INVALID_FHIR', 'the body must be a Subscription resource', { expression: 'resourceType' });
  const issues = r4Issues(r);
  if (issues.length)
    throw new GatewayError('INVALID_FHIR', issues[0]?.diagnostics ?? 'invalid Subscription', { issues });
  const s = r as unknown as Subscription & { _criteria?: Extended };
  if (s.criteria !== exchangeStateTopic(fhirBase))
    throw unprocessable(
      `unknown topic ${s.criteria}: this gateway offers ${exchangeStateTopic(fhirBase)}`,
      'Subscription.criteria',
    );
  if (s.status !== 'requested' && s.status !== 'active' && s.status !== 'off')
    throw unprocessable(`a client may ask for status requested or off, not ${s.status}`, 'Subscription.status');
  if (s.end)
    throw unprocessable('Subscription.end is not supported: delete the subscription instead', 'Subscription.end');
  if (s.reason.length > MAX_REASON) throw unprocessable('Subscription.reason is too long', 'Subscription.reason');
  const channel = s.channel as Subscription['channel'] & { _payload?: Extended } & Extended;
  if (channel.type !== 'rest-hook')
    throw unprocessable(
      `channel type ${channel.type} is not supported: the gateway notifies by rest-hook only`,
      'Subscription.channel.type',
    );
  if (!channel.endpoint) throw unprocessable('a rest-hook needs channel.endpoint', 'Subscription.channel.endpoint');
  if (channel.header?.length)
    throw unprocessable(
      'channel.header is not supported: the gateway keeps no credentials for endpoints (authenticate the caller by TLS or network)',
      'Subscription.channel.header',
    );
  if (channel.payload !== 'application/fhir+json')
    throw unprocessable('channel.payload must be application/fhir+json', 'Subscription.channel.payload');
  const content = extensionsOf(channel._payload, BACKPORT_EXT.payloadContent).map((x) => x.valueCode);
  if (content.length !== 1 || (content[0] !== 'id-only' && content[0] !== 'empty'))
    throw unprocessable(
      content[0] === 'full-resource'
        ? 'payload content full-resource is not offered: notifications never carry content; use id-only and read the focus'
        : 'give one backport-payload-content: id-only or empty',
      'Subscription.channel.payload',
    );
  const heartbeat = extensionsOf(channel, BACKPORT_EXT.heartbeatPeriod).map((x) => x.valueUnsignedInt);
  const seconds = heartbeat[0];
  if (heartbeat.length > 1 || (seconds !== undefined && (seconds < 1 || seconds > MAX_HEARTBEAT_SECONDS)))
    throw unprocessable(`the heartbeat period is 1 to ${MAX_HEARTBEAT_SECONDS} seconds`, 'Subscription.channel');
  const filters = extensionsOf(s._criteria, BACKPORT_EXT.filterCriteria).map((x) => x.valueString ?? '');
  return {
    status: s.status === 'off' ? 'off' : 'requested',
    reason: s.reason,
    endpoint: checkNotifyEndpoint(channel.endpoint, 'Subscription.channel.endpoint'),
    payloadContent: content[0],
    heartbeatSeconds: seconds ?? null,
    filter: parseTopicFilter(filters),
  };
}

/** A stored subscription as an R4 Subscription claiming the backport profile. */
export function subscriptionResource(s: StoredSubscription, fhirBase: string): Subscription {
  const filters = formatTopicFilter(s.filter);
  return {
    resourceType: 'Subscription',
    id: s.id,
    meta: {
      versionId: String(s.version),
      lastUpdated: s.updatedAt.toISOString(),
      profile: [BACKPORT_PROFILE.subscription],
    },
    status: s.status,
    reason: s.reason,
    criteria: exchangeStateTopic(fhirBase),
    ...(filters.length
      ? { _criteria: { extension: filters.map((v) => ({ url: BACKPORT_EXT.filterCriteria, valueString: v })) } }
      : {}),
    ...(s.error ? { error: s.error } : {}),
    channel: {
      ...(s.heartbeatSeconds
        ? { extension: [{ url: BACKPORT_EXT.heartbeatPeriod, valueUnsignedInt: s.heartbeatSeconds }] }
        : {}),
      type: 'rest-hook',
      endpoint: s.endpoint,
      payload: 'application/fhir+json',
      _payload: { extension: [{ url: BACKPORT_EXT.payloadContent, valueCode: s.payloadContent }] },
    },
  } as Subscription;
}

import type { FastifyPluginAsync } from 'fastify';
import type { CapabilityStatement } from 'fhir/r4.js';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { TOKEN_PATH } from '../../src/auth/token-endpoint.ts';
import { PUBLIC, FHIR_REST } from '../route-policy.ts';
import { AUDIT_SEARCH_PARAMS, MAX_COUNT } from '../../src/audit/search.ts';
import { CLAIMABLE_PROFILES } from '../../src/audit/balp/patterns.ts';
import {
  buildCapabilityStatement,
  type OperationCapability,
  type ResourceCapability,
} from '../../src/fhir/capability.ts';
import { replyRead } from './fhir-read.ts';
import { BACKPORT_PROFILE } from '../../src/notify/topic.ts';

const VERSION = '0.1.0';

/** Every FHIR resource the gateway serves, with what works on it. */
export const FHIR_RESOURCES: ResourceCapability[] = [
  {
    type: 'AuditEvent',
    interactions: ['read', 'search-type'],
    searchParams: AUDIT_SEARCH_PARAMS,
    supportedProfile: CLAIMABLE_PROFILES,
    documentation: `IHE BALP entries of the audit log. Search by GET or POST _search; _sort=-date (default) or date; _count up to ${MAX_COUNT} (larger is clamped); Prefer: handling=strict (default, unknown parameters are 400) or lenient (ignored).`,
  },
  {
    type: 'Task',
    interactions: ['read'],
    documentation:
      'An exchange this client submitted: its state, with outputs per recipient (delivery state, processed once its processed receipt is in, and each response message).',
  },
  {
    type: 'Provenance',
    interactions: ['read', 'search-type'],
    searchParams: [
      { name: 'state', type: 'token', documentation: 'received, forwarded or acknowledged' },
      { name: 'sender', type: 'token', documentation: 'the sending partner id' },
      { name: 'before', type: 'string', documentation: 'the paging cursor of a next link' },
    ],
    documentation:
      'One per bundle received for this client: who sent it and when; the read carries the verified signature.',
  },
  {
    type: 'Subscription',
    interactions: ['create', 'read', 'update', 'delete', 'search-type'],
    searchParams: [{ name: 'status', type: 'token', documentation: 'requested, active, error or off' }],
    supportedProfile: [BACKPORT_PROFILE.subscription],
    operations: [
      {
        name: 'status',
        definition: 'http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status',
      },
    ],
    documentation:
      "R4 Subscriptions Backport: this client's own rest-hook subscriptions to {base}/fhir/SubscriptionTopic/exchange-state (filters Task?_id= and Task?event=), payload application/fhir+json with id-only or empty content, optional heartbeat; activated by a handshake. See docs/SUBSCRIPTIONS.md.",
  },
];

/** Every FHIR operation the gateway serves. */
export const FHIR_OPERATIONS: OperationCapability[] = [
  { name: 'process-message', definition: 'http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message' },
];

export function capabilityStatement(baseUrl: string): CapabilityStatement {
  return buildCapabilityStatement({
    baseUrl,
    version: VERSION,
    resources: FHIR_RESOURCES,
    operations: FHIR_OPERATIONS,
    security: {
      // SMART's oauth-uris extension: where a backend client gets its token (discovery has the rest).
      extension: [
        {
          url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
          extension: [{ url: 'token', valueUri: baseUrl + TOKEN_PATH }],
        },
      ],
      service: [
        {
          coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }],
        },
      ],
      description: 'SMART Backend Services (client_credentials with private_key_jwt)',
    },
  });
}

export function metadataRoutes(ctx: Pick<GatewayContext, 'config'>): FastifyPluginAsync {
  return async (app) => {
    const statement = capabilityStatement(ctx.config.baseUrl);
    // The statement is fixed for the life of the process.
    const since = new Date(Math.floor(Date.now() / 1000) * 1000);
    app.get('/fhir/metadata', { config: { ...PUBLIC.config, ...FHIR_REST } }, async (req, reply) =>
      replyRead(req, reply, statement, since),
    );
  };
}

import type { FastifyContextConfig, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { required } from '../../src/required.ts';
import {
  hasAnyScope,
  requireScope,
  SCOPE_ADMIN,
  SCOPE_ALL_READ,
  SCOPE_ALL_WRITE,
  SCOPE_BUNDLE_WRITE,
} from '../guard.ts';
import { inboxReceiver, type ReceiveResult } from '../../src/inbound/receive.ts';
import { EVIDENCE } from '../../src/protocol/evidence.ts';
import { inboxReader, type InboxRequester } from '../../src/inbound/inbox-read.ts';
import { INBOX_STATES, type InboxMetadata, type InboxState } from '../../src/inbound/inbox-store.ts';
import { gatewayDecryptionKeys } from '../../src/inbound/decryption-keys.ts';
import { formatInboxCursor, parseInboxCursor } from '../../src/inbound/inbox-cursor.ts';
import { PROTOCOL } from '../../src/protocol/wire.ts';
import { responseCorrelation } from '../../src/outbound/answers/response-correlation.ts';
import '../route-policy.ts';

/** Reading inbox messages needs system/*.read; acknowledging changes their state, so it needs a write scope. */
export const INBOX_READ_SCOPE = SCOPE_ALL_READ;
const INBOX_READ_SCOPES = [INBOX_READ_SCOPE];
const INBOX_ACK_SCOPES = [SCOPE_ALL_WRITE, SCOPE_BUNDLE_WRITE];

/**
 * The peer-gateway deliveries (POST /inbox, POST /inbox/imaging): mutual TLS
 * and the sender binding (plugins/plugins/tls.ts), refusals audited as inbox.refused.
 */
export const PEER_DELIVERY = { peer: true, refusalAudit: 'inbox.refused' } as const satisfies FastifyContextConfig;

/** The one 200 answer of both peer deliveries: the signed receipt, and where our audit log records it. */
export function sendReceipt(reply: FastifyReply, result: ReceiveResult): FastifyReply {
  if (result.auditIndex !== undefined) reply.header(EVIDENCE.auditIndexHeader, String(result.auditIndex));
  return reply.code(200).header('Cache-Control', 'no-store').type(PROTOCOL.mediaType).send(result.receipt);
}

/**
 * The guarded caller as an inbox viewer: routed partners only
 * (auth_clients.receives_from), every message with the admin scope.
 */
export function inboxViewer(request: FastifyRequest): InboxRequester {
  const p = required(request.principal, 'a principal on a guarded inbox route');
  return { clientId: p.clientId, all: hasAnyScope(p.scopes, [SCOPE_ADMIN]), remoteAddress: request.ip };
}

const metaJson = (m: InboxMetadata) => ({
  id: m.id,
  sender: m.sender,
  delivery: m.jti,
  exchange: m.exchangeId,
  digest: m.envelopeDigest,
  receipt: m.receiptId,
  state: m.state,
  receivedAt: m.receivedAt.toISOString(),
  forwardedAt: m.forwardedAt?.toISOString() ?? null,
  acknowledgedAt: m.acknowledgedAt?.toISOString() ?? null,
  acknowledgedBy: m.acknowledgedBy,
  // A response to one of our deliveries: its exchange (GET /exchanges/{id}), delivery and response code.
  respondsTo: m.respondsTo,
});

/** The inbox listing's query (state, sender, _count, before), shared with its FHIR searchset. */
export function parseListQuery(q: Record<string, unknown>) {
  const state = q.state;
  if (state !== undefined && !INBOX_STATES.includes(state as InboxState)) {
    throw new GatewayError('INVALID_VALUE', `state must be one of ${INBOX_STATES.join(', ')}`, { expression: 'state' });
  }
  const count = q._count === undefined ? 100 : Number(q._count);
  if (!Number.isInteger(count) || count < 1 || count > 1000)
    throw new GatewayError('INVALID_VALUE', '_count must be 1 to 1000', { expression: '_count' });
  const before = q.before === undefined ? undefined : parseInboxCursor(q.before);
  const sender = typeof q.sender === 'string' ? q.sender : undefined;
  return { state: state as InboxState | undefined, sender, limit: count, before };
}

/**
 * POST /inbox (peer gateways; authenticated by the envelope's signature, not
 * a token) and the pull API for the local EHR (bearer token with scopes).
 */
export function inboxRoutes(ctx: GatewayContext): FastifyPluginAsync {
  return async (app) => {
    const keys = gatewayDecryptionKeys(ctx.keyring);
    // A received response is matched to the delivery of ours it answers (the outbound side's tables).
    const receive = inboxReceiver(ctx, keys, { responses: responseCorrelation(ctx.pool) });
    const reader = inboxReader(ctx, keys);
    app.addHook('onClose', async () => receive.drained());

    // Scoped to this plugin: the compact JWE arrives as text, up to INBOX_BODY_LIMIT.
    app.addContentTypeParser(
      PROTOCOL.mediaType,
      { parseAs: 'string', bodyLimit: ctx.config.inboxBodyLimit },
      (_req, body, done) => done(null, body),
    );

    app.post(
      PROTOCOL.inboxPath,
      { config: { ...PEER_DELIVERY, bodyBudget: true }, bodyLimit: ctx.config.inboxBodyLimit },
      async (request, reply) => {
        if (
          typeof request.body !== 'string' ||
          !/^application\/jose\s*(;|$)/i.test(request.headers['content-type'] ?? '')
        ) {
          throw new GatewayError(
            'UNSUPPORTED_MEDIA_TYPE',
            `POST ${PROTOCOL.inboxPath} takes ${PROTOCOL.mediaType} (a compact JWE)`,
          );
        }
        // Under mutual TLS the peer certificate names the partner; the signed sender must be that partner.
        const result = await receive(request.body, {
          remoteAddress: request.ip,
          tlsPartner: request.tlsPeer?.partnerId,
        });
        return sendReceipt(reply, result);
      },
    );

    app.get('/inbox/messages', { preHandler: requireScope(ctx, ...INBOX_READ_SCOPES) }, async (request, reply) => {
      const query = parseListQuery(request.query as Record<string, unknown>);
      const messages = await reader.list(query, inboxViewer(request));
      const last = messages.length === query.limit ? messages.at(-1) : undefined;
      return reply.header('Cache-Control', 'no-store').send({
        messages: messages.map(metaJson),
        ...(last ? { next: formatInboxCursor(last) } : {}),
      });
    });

    app.get<{ Params: { id: string } }>(
      '/inbox/messages/:id',
      { preHandler: requireScope(ctx, ...INBOX_READ_SCOPES) },
      async (request, reply) => {
        const { meta, bundle, contentType } = await reader.read(request.params.id, inboxViewer(request));
        return (
          reply
            .header('Cache-Control', 'no-store')
            .header('X-Exchange-Sender', meta.sender)
            .header('X-Exchange-Delivery', meta.jti)
            // An imaging message's content is the signed manifest ({sha256, length, imagingStudy}): JSON, not a FHIR resource.
            .type(contentType === PROTOCOL.fhirContentType ? PROTOCOL.fhirContentType : 'application/json')
            .send(bundle)
        );
      },
    );

    app.post<{ Params: { id: string } }>(
      '/inbox/messages/:id/$ack',
      { preHandler: requireScope(ctx, ...INBOX_ACK_SCOPES) },
      async (request, reply) => {
        const meta = await reader.acknowledge(request.params.id, inboxViewer(request));
        return reply.header('Cache-Control', 'no-store').send(metaJson(meta));
      },
    );
  };
}

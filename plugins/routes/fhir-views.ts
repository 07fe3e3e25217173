import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { hasAnyScope, requireScope, SCOPE_ADMIN, SCOPE_ALL_READ } from '../guard.ts';
import { readExchange } from '../../src/outbound/exchange-view.ts';
import { exchangeTask } from '../../src/outbound/exchange-task.ts';
import { inboxReader } from '../../src/inbound/inbox-read.ts';
import { gatewayDecryptionKeys } from '../../src/inbound/decryption-keys.ts';
import { formatInboxCursor } from '../../src/inbound/inbox-cursor.ts';
import { inboxProvenance } from '../../src/inbound/provenance.ts';
import { FHIR_JSON, searchset } from '../../src/fhir/views.ts';
import { INBOX_READ_SCOPE, inboxViewer, parseListQuery } from './inbox.ts';
import { FHIR_REST } from '../route-policy.ts';
import { postedSearchParams, type SearchQuery } from './fhir-search-body.ts';

/**
 * What the gateway knows, as FHIR resources at FHIR-style paths (the JSON
 * endpoints stay as they are): an exchange as a Task, the inbox as a
 * searchset of Provenance (one per received bundle, who sent it and when),
 * and one Provenance with the sender's verified signature.
 */
export function fhirViewRoutes(ctx: GatewayContext): FastifyPluginAsync {
  return async (app) => {
    const reader = inboxReader(ctx, gatewayDecryptionKeys(ctx.keyring));
    const base = ctx.config.baseUrl;
    const fhir = (reply: FastifyReply, body: object) =>
      reply.header('Cache-Control', 'no-store').type(FHIR_JSON).send(body);

    app.get<{ Params: { id: string } }>(
      '/fhir/Task/:id',
      { config: FHIR_REST, preHandler: requireScope(ctx, SCOPE_ALL_READ, SCOPE_ADMIN) },
      async (req, reply) => {
        const p = req.principal;
        const isAdmin = p ? hasAnyScope(p.scopes, [SCOPE_ADMIN]) : false;
        const owner = isAdmin ? null : (p?.clientId ?? '');
        // Either kind of exchange is a Task: what a notification's focus names.
        const view =
          (await readExchange(ctx.pool, req.params.id, owner)) ??
          (await readExchange(ctx.pool, req.params.id, owner, 'imaging'));
        if (!view) throw new GatewayError('NOT_FOUND', `no Task ${req.params.id}`);
        return fhir(reply, exchangeTask(view, base));
      },
    );

    const provenanceSearch = async (req: FastifyRequest, params: SearchQuery, reply: FastifyReply) => {
      const query = parseListQuery(params);
      const messages = await reader.list(query, inboxViewer(req));
      const last = messages.length === query.limit ? messages.at(-1) : undefined;
      const url = (before?: string) => {
        const q = new URLSearchParams();
        if (query.state) q.set('state', query.state);
        if (query.sender) q.set('sender', query.sender);
        q.set('_count', String(query.limit));
        if (before) q.set('before', before);
        return `${base}/fhir/Provenance?${q.toString()}`;
      };
      const self = url(query.before ? formatInboxCursor(query.before) : undefined);
      return fhir(
        reply,
        searchset({
          self,
          resources: messages.map((m) => inboxProvenance(base, m)),
          next: last ? url(formatInboxCursor(last)) : undefined,
          fullUrl: (r) => `${base}/fhir/Provenance/${r.id}`,
        }),
      );
    };
    const searchRoute = { config: FHIR_REST, preHandler: requireScope(ctx, INBOX_READ_SCOPE) };
    app.get('/fhir/Provenance', searchRoute, (req, reply) => provenanceSearch(req, req.query as SearchQuery, reply));
    app.post('/fhir/Provenance/_search', searchRoute, (req, reply) =>
      provenanceSearch(req, postedSearchParams(req), reply),
    );

    app.get<{ Params: { id: string } }>(
      '/fhir/Provenance/:id',
      { config: FHIR_REST, preHandler: requireScope(ctx, INBOX_READ_SCOPE) },
      async (req, reply) => {
        // Opens and re-verifies the message like a read (and is audited as one): the signature is evidence.
        const { meta, contentType, signed } = await reader.read(req.params.id, inboxViewer(req));
        return fhir(reply, inboxProvenance(base, meta, { ...signed, contentType }));
      },
    );
  };
}

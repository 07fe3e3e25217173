import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import {
  requireScope,
  hasAnyScope,
  SCOPE_ADMIN,
  SCOPE_ALL_READ,
  SCOPE_ALL_WRITE,
  SCOPE_BUNDLE_WRITE,
} from '../guard.ts';
import { decodeJsonBody, parseFhirJson } from '../../src/fhir/json.ts';
import { checkNotifyEndpoint } from '../../src/notify/endpoint.ts';
import { acceptSubmission, IntakeWriter, type Submission } from '../../src/outbound/intake.ts';
import { readExchange } from '../../src/outbound/exchange-view.ts';
import { replyAccepted } from './accepted-reply.ts';
import { FHIR_REST } from '../route-policy.ts';
import { parsePrefer } from '../../src/fhir/rest/prefer.ts';
import { PURPOSE_OF_USE_HEADER } from '../../src/fhir/purpose-of-use.ts';
import { findAnsweredMessage } from '../../src/inbound/inbox-store.ts';
import { inboxViewer } from './inbox.ts';

interface RawFhir {
  raw: string;
  json: unknown;
}

// Intake routes (bundles here, imaging in imaging.ts): their refusals are audited (plugins/refusal-audit.ts).
export const INTAKE = { refusalAudit: 'intake.refused' } as const;

/**
 * Intake (POST /fhir/$process-message, POST /exchanges?recipient=…) and the
 * sender's view of its exchanges (GET /exchanges/{id}). Bodies are
 * application/fhir+json only, kept verbatim so the recipient gets exactly
 * the bytes accepted.
 */
export function exchangeRoutes(ctx: GatewayContext): FastifyPluginAsync {
  return async (app) => {
    const writer = new IntakeWriter(ctx.pool);
    app.addHook('onClose', async () => writer.drained());
    // Checked in onRequest too, so an unauthenticated body is never read or parsed
    // (the preHandler copy marks the route as guarded for the default-deny check).
    const write = requireScope(ctx, SCOPE_BUNDLE_WRITE, SCOPE_ALL_WRITE);
    const read = requireScope(ctx, SCOPE_ALL_READ, SCOPE_ADMIN);

    // In this scope only FHIR JSON is accepted (415 otherwise), and the raw text is kept.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('application/fhir+json', { parseAs: 'buffer' }, (_req, body, done) => {
      try {
        const raw = decodeJsonBody(body as Buffer);
        done(null, { raw, json: parseFhirJson(raw, ctx.config.jsonMaxDepth) } satisfies RawFhir);
      } catch (err) {
        done(err as Error, undefined);
      }
    });

    const submit = async (
      req: FastifyRequest,
      reply: FastifyReply,
      recipients: Submission['recipients'],
      responseUrl?: string,
    ) => {
      const body = req.body as RawFhir | undefined;
      if (!body) throw new GatewayError('UNSUPPORTED_MEDIA_TYPE', 'send the Bundle as application/fhir+json');
      const key = req.headers['idempotency-key'];
      const result = await acceptSubmission(ctx, writer, {
        clientId: req.principal?.clientId ?? '',
        idempotencyKey: typeof key === 'string' ? key : undefined,
        raw: body.raw,
        bundle: body.json,
        recipients,
        remoteAddress: req.ip,
        purposeHeader: req.headers[PURPOSE_OF_USE_HEADER],
        clientPurposeOfUse: req.principal?.purposeOfUse,
        // A response message answers a received one this client may see (its inbox routing).
        answered: (headerId) => findAnsweredMessage(ctx.pool, headerId, inboxViewer(req)),
        responseUrl,
      });
      const location = `/exchanges/${result.exchangeId}`;
      return replyAccepted(
        reply,
        location,
        `exchange ${result.exchangeId} accepted; its delivery state is at ${location}`,
        parsePrefer(req.headers.prefer).return,
      );
    };

    const fhirIntake = { ...INTAKE, ...FHIR_REST };
    // R4 $process-message: `response-url` (a query parameter) is where the exchange's state changes go.
    app.post('/fhir/$process-message', { config: fhirIntake, onRequest: write, preHandler: write }, (req, reply) => {
      const q = (req.query as { 'response-url'?: string | string[] })['response-url'];
      if (Array.isArray(q)) throw new GatewayError('INVALID_VALUE', 'give response-url once');
      return submit(
        req,
        reply,
        { from: 'message' },
        q === undefined ? undefined : checkNotifyEndpoint(q, 'response-url'),
      );
    });

    app.post('/exchanges', { config: fhirIntake, onRequest: write, preHandler: write }, (req, reply) => {
      const q = (req.query as { recipient?: string | string[] }).recipient;
      const ids = q === undefined ? [] : Array.isArray(q) ? q : [q];
      return submit(req, reply, { from: 'explicit', ids });
    });

    app.get<{ Params: { id: string } }>('/exchanges/:id', { preHandler: read }, async (req) => {
      const p = req.principal;
      const isAdmin = p ? hasAnyScope(p.scopes, [SCOPE_ADMIN]) : false;
      const view = await readExchange(ctx.pool, req.params.id, isAdmin ? null : (p?.clientId ?? ''));
      if (!view) throw new GatewayError('NOT_FOUND', `no exchange ${req.params.id}`);
      return view;
    });
  };
}

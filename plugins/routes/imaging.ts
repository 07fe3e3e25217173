import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import {
  hasAnyScope,
  requireScope,
  SCOPE_ADMIN,
  SCOPE_ALL_READ,
  SCOPE_ALL_WRITE,
  SCOPE_BUNDLE_WRITE,
} from '../guard.ts';
import { gatewayDecryptionKeys } from '../../src/inbound/decryption-keys.ts';
import { imagingContentReader } from '../../src/inbound/imaging/content.ts';
import { imagingDir, sweepPartials } from '../../src/imaging/sealed-files.ts';
import { acceptImaging } from '../../src/outbound/imaging/intake.ts';
import { PURPOSE_OF_USE_HEADER } from '../../src/fhir/purpose-of-use.ts';
import { imagingReceiver } from '../../src/inbound/imaging/receive.ts';
import { readImagingExchange } from '../../src/outbound/imaging/store.ts';
import { PROTOCOL } from '../../src/protocol/wire.ts';
import { inboxViewer, PEER_DELIVERY, sendReceipt } from './inbox.ts';
import { replyAccepted } from './accepted-reply.ts';
import { INTAKE } from './exchanges.ts';
import { answerBeforeBody } from '../early-answer.ts';
import { checkNotifyEndpoint } from '../../src/notify/endpoint.ts';

export const SCOPE_IMAGING_WRITE = 'system/ImagingStudy.write';

/** An error before the body was read to its end: a small unread body is drained, anything else closes (early-answer.ts). */
async function closingOnError<T>(req: FastifyRequest, reply: FastifyReply, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    answerBeforeBody(req, reply);
    throw err;
  }
}

/**
 * Imaging: POST /imaging (DICOM intake from the EHR), GET
 * /imaging/{id} (the sender's view), POST /inbox/imaging (deliveries from
 * peer gateways, authenticated by the signed manifest) and GET
 * /inbox/messages/{id}/content (the DICOM bytes for the local EHR).
 * Bodies are streams here: nothing is buffered whole.
 */
export function imagingRoutes(ctx: GatewayContext): FastifyPluginAsync {
  return async (app) => {
    for (const side of ['outbound', 'inbox'] as const) {
      const removed = await sweepPartials(await imagingDir(ctx.config, side));
      if (removed) ctx.logger.info({ removed, side }, 'removed partial imaging files of interrupted transfers');
    }
    const keys = gatewayDecryptionKeys(ctx.keyring);
    const receive = imagingReceiver(ctx, keys);
    const content = imagingContentReader(ctx, keys);

    app.removeAllContentTypeParsers();
    // The raw request stream is the body: the pipelines read it chunk by chunk.
    app.addContentTypeParser(['application/dicom', 'multipart/related'], (_req, payload, done) => done(null, payload));

    const streamOf = (req: FastifyRequest): Readable => {
      if (!req.body || typeof (req.body as Readable).on !== 'function')
        throw new GatewayError('UNSUPPORTED_MEDIA_TYPE', 'send application/dicom or multipart/related');
      return req.body as Readable;
    };

    app.post(
      '/imaging',
      { config: INTAKE, preHandler: requireScope(ctx, SCOPE_IMAGING_WRITE, SCOPE_BUNDLE_WRITE, SCOPE_ALL_WRITE) },
      (req, reply) =>
        closingOnError(req, reply, async () => {
          const query = req.query as { recipient?: string | string[]; 'response-url'?: string | string[] };
          const q = query.recipient;
          // As with $process-message: where the exchange's state changes go, checked by the one endpoint rule.
          const notify = query['response-url'];
          if (Array.isArray(notify)) throw new GatewayError('INVALID_VALUE', 'give response-url once');
          const responseUrl = notify === undefined ? undefined : checkNotifyEndpoint(notify, 'response-url');
          const key = req.headers['idempotency-key'];
          const result = await acceptImaging(ctx, {
            responseUrl,
            clientId: req.principal?.clientId ?? '',
            idempotencyKey: typeof key === 'string' ? key : undefined,
            contentType: req.headers['content-type'],
            body: streamOf(req),
            recipients: q === undefined ? [] : Array.isArray(q) ? q : [q],
            contentLength: /^\d{1,15}$/.test(req.headers['content-length'] ?? '')
              ? Number(req.headers['content-length'])
              : undefined,
            remoteAddress: req.ip,
            purposeHeader: req.headers[PURPOSE_OF_USE_HEADER],
            clientPurposeOfUse: req.principal?.purposeOfUse,
          });
          const location = `/imaging/${result.exchangeId}`;
          return replyAccepted(
            reply,
            location,
            `imaging exchange ${result.exchangeId} accepted (${result.instances} instance(s)); its delivery state is at ${location}`,
          );
        }),
    );

    app.get<{ Params: { id: string } }>(
      '/imaging/:id',
      { preHandler: requireScope(ctx, SCOPE_ALL_READ, SCOPE_ADMIN) },
      async (req) => {
        const p = req.principal;
        const isAdmin = p ? hasAnyScope(p.scopes, [SCOPE_ADMIN]) : false;
        const view = await readImagingExchange(ctx.pool, req.params.id, isAdmin ? null : (p?.clientId ?? ''));
        if (!view) throw new GatewayError('NOT_FOUND', `no imaging exchange ${req.params.id}`);
        return view;
      },
    );

    app.post(`${PROTOCOL.inboxPath}/imaging`, { config: PEER_DELIVERY }, (req, reply) =>
      closingOnError(req, reply, async () => {
        const result = await receive(req.headers['content-type'], streamOf(req), {
          remoteAddress: req.ip,
          tlsPartner: req.tlsPeer?.partnerId,
        });
        // A repeated delivery is answered without reading its bulk: do not keep that connection.
        if (!req.raw.complete) reply.header('connection', 'close');
        return sendReceipt(reply, result);
      }),
    );

    app.get<{ Params: { id: string } }>(
      '/inbox/messages/:id/content',
      { preHandler: requireScope(ctx, SCOPE_ALL_READ) },
      async (req, reply) => {
        const c = await content(req.params.id, inboxViewer(req));
        return reply
          .header('Cache-Control', 'no-store')
          .header('Content-Length', String(c.length))
          .header('X-Exchange-Sender', c.sender)
          .header('X-Exchange-Delivery', c.delivery)
          .type(c.contentType)
          .send(c.stream);
      },
    );
  };
}

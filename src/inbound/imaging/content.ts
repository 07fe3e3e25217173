import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { appendAudit } from '../../audit/append.ts';
import { GatewayError } from '../../errors.ts';
import type { DecryptionKeyResolver } from '../../jose/open.ts';
import { isJsonJws } from '../../jose/pq/dual-jws.ts';
import { openStream } from '../../jose/stream-open.ts';
import { spoolSink } from '../../jose/stream-sinks.ts';
import { gatewayDecryptionKeys, gatewayKemKeys } from '../decryption-keys.ts';
import { imagingDir } from '../../imaging/sealed-files.ts';
import type { ManifestContent } from '../../protocol/imaging-manifest.ts';
import { clientAgent, inboxReader, type InboxRequester } from '../inbox-read.ts';
import type { InboxContext } from '../receive.ts';

export interface ImagingContent {
  contentType: string;
  length: number;
  sender: string;
  delivery: string;
  stream: Readable;
}

/**
 * GET /inbox/messages/{id}/content: the DICOM bytes of an imaging message
 * for the local EHR. The manifest is opened and its signature re-verified
 * (inbox-read.ts, audited); the stored content JWE is opened with the HSM
 * key into an encrypted spool, and only when its tag, SHA-256 and length
 * match the signed manifest is the first byte handed out.
 */
export function imagingContentReader(
  ctx: InboxContext,
  resolveKey: DecryptionKeyResolver = gatewayDecryptionKeys(ctx.keyring),
  resolveKemKey = gatewayKemKeys(ctx.keyring),
) {
  const reader = inboxReader(ctx, resolveKey);
  return async function content(id: string, viewer: InboxRequester): Promise<ImagingContent> {
    // The manifest read checks the inbox routing (404 for another client's message) and audits.
    const { meta, bundle, signed } = await reader.read(id, viewer);
    const { rows } = await ctx.pool.query<{ content_type: string; content_path: string }>(
      'SELECT content_type, content_path FROM imaging_inbox_content WHERE message_id = $1',
      [id],
    );
    const row = rows[0];
    if (!row) throw new GatewayError('NOT_FOUND', `inbox message ${id} carries no imaging content`);
    const manifest = JSON.parse(bundle) as ManifestContent;
    const spool = await spoolSink(join(await imagingDir(ctx.config, 'inbox'), `${id}.read`));
    try {
      await openStream(
        createReadStream(row.content_path, { highWaterMark: 64 * 1024 }),
        {
          hsm: ctx.hsm,
          kdf: ctx.config.hsmKdf,
          resolveKey,
          resolveKemKey,
          // The content was sealed in the manifest's version: a v2 message is never served from a v1 file.
          version: isJsonJws(signed.jws) ? 2 : 1,
          cty: row.content_type,
          maxBytes: manifest.length,
        },
        spool,
        (o) => {
          if (o.length !== manifest.length || o.sha256.toString('base64url') !== manifest.sha256)
            throw new GatewayError('CONTENT_DIGEST_MISMATCH', 'stored content differs from the signed manifest');
        },
      );
    } catch (err) {
      await appendAudit(ctx.pool, [
        {
          type: 'inbox.read',
          outcome: 'serious-failure',
          agent: clientAgent(viewer),
          entity: [{ type: 'imaging-content', id }],
          detail: { reason: err instanceof GatewayError ? err.code : 'INTEGRITY' },
          ...(meta.purposeOfUse ? { purposeOfUse: meta.purposeOfUse } : {}),
        },
      ]);
      ctx.logger.error(
        { messageId: id, reason: err instanceof GatewayError ? err.code : (err as Error).message },
        'stored imaging content failed to open or verify',
      );
      throw new GatewayError('INTERNAL', 'the stored imaging content failed to open or verify', { cause: err });
    }
    return {
      contentType: row.content_type,
      length: manifest.length,
      sender: meta.sender,
      delivery: meta.jti,
      stream: spool.read(),
    };
  };
}

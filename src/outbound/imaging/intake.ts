import { createHash, randomBytes } from 'node:crypto';
import { required } from '../../required.ts';
import { join } from 'node:path';
import type { AuditInput } from '../../audit/append.ts';
import type { GatewayContext } from '../../gateway-context.ts';
import { purposeFromHeader, submissionPurpose } from '../../fhir/purpose-of-use.ts';
import { GatewayError } from '../../errors.ts';
import { DicomStreamCheck, type DicomInstance, type DicomLimits } from '../../imaging/dicom.ts';
import { imagingStudy } from '../../imaging/imaging-study.ts';
import { boundaryOf, multipartParts, parseMediaType } from '../../imaging/multipart.ts';
import { ensureSpace, imagingDir, SealedContentFile } from '../../imaging/sealed-files.ts';
import { signAnnouncement } from '../../protocol/imaging-announcement.ts';
import { recordImagingAttempt } from './deliver.ts';
import { LiveTransmission, liveQueueBytes } from './live.ts';
import type { Signer } from '../../jose/signer.ts';
import { IMAGING, studyContentType, type ManifestContent } from '../../protocol/imaging-manifest.ts';
import { writeImagingIntake, type ImagingDeliveryRecord } from './store.ts';
import { uuidv7 } from '../../ids.ts';
import {
  checkIdempotencyKey,
  explicitRecipients,
  resolveRecipients,
  signAndSeal,
  type Recipient,
} from '../submission.ts';

export type ImagingContext = Pick<GatewayContext, 'config' | 'pool' | 'directory' | 'keyring' | 'logger' | 'fetch'>;

export interface ImagingSubmission {
  clientId: string;
  idempotencyKey?: string;
  /** The request's Content-Type header. */
  contentType: string | undefined;
  body: AsyncIterable<Buffer>;
  recipients: string[];
  /** The request's Content-Length, when it had one: checked against free storage before the body is read. */
  contentLength?: number;
  /** The client's network address, for the audit trail. */
  remoteAddress?: string;
  /** The Purpose-Of-Use request header as received, if any. */
  purposeHeader?: string | string[];
  /** The purpose the client's registration gives when a submission states none. */
  clientPurposeOfUse?: readonly string[];
  /** Where the exchange's state changes go as response messages (`response-url`, already checked). */
  responseUrl?: string | undefined;
}

export interface ImagingAccepted {
  exchangeId: string;
  replayed: boolean;
  deliveries: number;
  instances: number;
}

const tooLarge = (max: number) =>
  new GatewayError('PAYLOAD_TOO_LARGE', `an imaging submission may be at most ${max} bytes (DICOM_MAX_BYTES)`);

/** Single file or STOW-RS multipart; anything else is 415. */
function uploadKind(header: string | undefined): { kind: 'single' } | { kind: 'multi'; boundary: string } {
  const media = parseMediaType(header);
  if (media?.type === IMAGING.dicom) return { kind: 'single' };
  if (media?.type === 'multipart/related' && (media.params.type ?? IMAGING.dicom).toLowerCase() === IMAGING.dicom)
    return { kind: 'multi', boundary: boundaryOf(media) };
  throw new GatewayError(
    'UNSUPPORTED_MEDIA_TYPE',
    'POST /imaging takes application/dicom, or multipart/related; type="application/dicom" for several instances',
  );
}

/** Stream one DICOM file through the checks into `emit`; returns what it is. */
async function checkedFile(
  body: AsyncIterable<Buffer>,
  limits: DicomLimits,
  emit: (b: Buffer) => Promise<void>,
): Promise<DicomInstance> {
  const check = new DicomStreamCheck(limits);
  for await (const chunk of body) for (const out of check.push(chunk)) await emit(out);
  const { release, instance } = await check.end();
  for (const out of release) await emit(out);
  return instance;
}

/**
 * Accept a DICOM submission: check it as it streams, seal it per recipient
 * into DATA_DIR (streamed compact JWE; nothing plaintext is written), then
 * sign a manifest per recipient (its SHA-256, length and ImagingStudy) in
 * the HSM, seal it, and record exchange, deliveries, jobs and audit in one
 * transaction. On any refusal every file written is removed.
 */
export async function acceptImaging(ctx: ImagingContext, s: ImagingSubmission): Promise<ImagingAccepted> {
  checkIdempotencyKey(s.idempotencyKey);
  const purposeOfUse = submissionPurpose({ header: purposeFromHeader(s.purposeHeader) }, s.clientPurposeOfUse);
  const upload = uploadKind(s.contentType);
  // Per recipient, v1 or v2 (r.pq): the announcement, the content envelope and the manifest all follow it.
  const recipients = await resolveRecipients(ctx, explicitRecipients(s.recipients));
  const cfg = ctx.config;
  const limits: DicomLimits = {
    maxBytes: cfg.dicomMaxBytes,
    headBytes: cfg.dicomHeadBytes,
    inflateMax: cfg.dicomInflateMax,
    inflateConcurrency: cfg.dicomInflateConcurrency,
  };
  const ourBoundary = upload.kind === 'multi' ? `dicom-${randomBytes(16).toString('hex')}` : '';
  const contentType = upload.kind === 'multi' ? studyContentType(ourBoundary) : IMAGING.dicom;
  const dir = await imagingDir(cfg, 'outbound');
  if (s.contentLength !== undefined) {
    if (s.contentLength > cfg.dicomMaxBytes) throw tooLarge(cfg.dicomMaxBytes);
    // One sealed copy per recipient: base64url makes it 4/3 of the plaintext.
    await ensureSpace(dir, Math.ceil(s.contentLength / 3) * 4 * recipients.length, (facts, msg) =>
      ctx.logger.error(facts, msg),
    );
  }
  const signer = (await ctx.keyring.fresh()).signer('sig');
  const exchangeId = uuidv7();
  const iat = Math.floor(Date.now() / 1000);
  const pqSigner = recipients.some((r) => r.pq) ? await ctx.keyring.pqSigner() : undefined;
  const announcements = await Promise.all(
    recipients.map((r) =>
      signAnnouncement(
        signer,
        { iss: cfg.org, aud: r.partner.id, iat, jti: r.deliveryId, exchange: exchangeId },
        r.pq ? pqSigner : undefined,
      ),
    ),
  );
  const sealed: SealedContentFile[] = [];
  const live: LiveTransmission[] = [];
  try {
    for (const [i, r] of recipients.entries()) {
      const file = await SealedContentFile.create(join(dir, `${r.deliveryId}.jwe`), r.key, contentType, r.pq?.kem);
      sealed.push(file);
      // A partner held after a downgrade gets nothing until an operator decides: no live copy either.
      if (cfg.imagingCutThrough === 'on' && !r.held) {
        const t = new LiveTransmission(
          ctx,
          r.partner,
          r.deliveryId,
          required(announcements[i], 'an announcement for each recipient'),
          liveQueueBytes(recipients.length),
          r.pq ? 2 : 1,
        );
        live.push(t);
        file.tap = (jwe) => t.push(jwe);
      }
    }
    const hash = createHash('sha256');
    let length = 0;
    const emit = async (b: Buffer) => {
      length += b.length;
      if (length > cfg.dicomMaxBytes) throw tooLarge(cfg.dicomMaxBytes);
      hash.update(b);
      await Promise.all(sealed.map((f) => f.write(b)));
    };
    const instances: DicomInstance[] = [];
    if (upload.kind === 'single') {
      instances.push(await checkedFile(s.body, limits, emit));
    } else {
      // Re-framed with our own boundary and minimal headers: the recipient gets a canonical multipart body.
      for await (const part of multipartParts(s.body, upload.boundary, { maxParts: cfg.imagingMaxInstances })) {
        const type = parseMediaType(part.headers['content-type'])?.type;
        if (type !== IMAGING.dicom)
          throw new GatewayError(
            'UNSUPPORTED_MEDIA_TYPE',
            `part ${instances.length + 1} is ${type ?? 'untyped'}, not application/dicom`,
            { expression: `part[${instances.length}]` },
          );
        await emit(Buffer.from(`--${ourBoundary}\r\nContent-Type: application/dicom\r\n\r\n`, 'latin1'));
        try {
          instances.push(await checkedFile(part.body, limits, emit));
        } catch (err) {
          if (err instanceof GatewayError && !err.expression)
            throw new GatewayError(err.code, `part ${instances.length + 1}: ${err.message}`, {
              expression: `part[${instances.length}]`,
              cause: err,
            });
          throw err;
        }
        await emit(Buffer.from('\r\n', 'latin1'));
      }
      await emit(Buffer.from(`--${ourBoundary}--\r\n`, 'latin1'));
    }
    const study = imagingStudy(instances);
    for (const f of sealed) await f.finish();
    const manifest: ManifestContent = { sha256: hash.digest('base64url'), length, imagingStudy: study };
    return await record(ctx, s, {
      recipients,
      sealed,
      manifest,
      contentType,
      instances: instances.length,
      signer,
      exchangeId,
      iat,
      announcements,
      live,
      purposeOfUse,
    });
  } catch (err) {
    for (const t of live) t.drop();
    await Promise.all(sealed.map((f) => f.file.discard()));
    throw err;
  }
}

interface Sealed {
  /** One per recipient, in the order of `recipients`: */
  recipients: Recipient[];
  sealed: SealedContentFile[];
  manifest: ManifestContent;
  contentType: string;
  instances: number;
  signer: Signer;
  exchangeId: string;
  iat: number;
  announcements: string[];
  /** Only for the recipients sent to while sealing (not those held after a downgrade). */
  live: LiveTransmission[];
  purposeOfUse: string[];
}

async function record(ctx: ImagingContext, s: ImagingSubmission, x: Sealed): Promise<ImagingAccepted> {
  const { signer, exchangeId, iat } = x;
  const contentDigest = `sha-256=${x.manifest.sha256}`;
  const audit: AuditInput[] = [
    {
      type: 'intake.accepted',
      outcome: 'success',
      agent: {
        type: 'client',
        id: s.clientId || 'anonymous',
        ...(s.remoteAddress ? { network: s.remoteAddress } : {}),
      },
      entity: [{ type: 'imaging-exchange', id: exchangeId, digest: contentDigest }],
      detail: { content: 'imaging', instances: x.instances, recipients: x.recipients.length, bytes: x.manifest.length },
      purposeOfUse: x.purposeOfUse,
    },
  ];
  const envelope = {
    iss: ctx.config.org,
    iat,
    exchangeId,
    exchangeEntity: 'imaging-exchange',
    contentType: x.contentType,
    contentJson: JSON.stringify(x.manifest),
    purposeOfUse: x.purposeOfUse,
  };
  const deliveries: ImagingDeliveryRecord[] = await Promise.all(
    x.recipients.map(async (r, i) => {
      const id = r.deliveryId;
      const file = required(x.sealed[i], 'a sealed file for each recipient').file;
      const sealed = await signAndSeal({ signer, pq: () => ctx.keyring.pqSigner() }, r, envelope, {
        entity: [{ type: 'imaging-content', id, digest: contentDigest }],
        detail: { bytes: file.length },
      });
      audit.push(...sealed.audit);
      return {
        id,
        partnerId: r.partner.id,
        kid: r.key.kid,
        announcement: required(x.announcements[i], 'an announcement for each recipient'),
        manifestEnvelope: sealed.envelope,
        manifestDigest: sealed.digest,
        protocol: sealed.protocol,
        contentPath: file.path,
        contentJweLength: file.length,
      };
    }),
  );
  const written = await writeImagingIntake(
    ctx.pool,
    {
      exchange: {
        id: exchangeId,
        clientId: s.clientId,
        contentType: x.contentType,
        instances: x.instances,
        contentLength: x.manifest.length,
        contentDigest,
        idempotencyKey: s.idempotencyKey ?? null,
        purposeOfUse: x.purposeOfUse,
        responseUrl: s.responseUrl ?? null,
      },
      deliveries,
      audit,
    },
    x.live.some((t) => !t.dropped) ? new Date(Date.now() + ctx.config.deliveryTimeout) : null,
  );
  if (written.replayed) {
    // An earlier submission with this Idempotency-Key won: ours is not needed.
    for (const t of x.live) t.drop();
    await Promise.all(x.sealed.map((f) => f.file.discard()));
    return { exchangeId: written.exchangeId, replayed: true, deliveries: 0, instances: x.instances };
  }
  // Committed: the live transmissions may now send their manifests; the job (scheduled a little later) is the fallback.
  for (const t of x.live) {
    const delivery = required(
      deliveries.find((d) => d.id === t.deliveryId),
      'a delivery for each live transmission',
    );
    const abandoned = t.dropped;
    if (!abandoned) t.finish(delivery.manifestEnvelope, { manifestDigest: delivery.manifestDigest, contentDigest });
    void t.result
      .then((r) => recordImagingAttempt(ctx, delivery.id, r, t.started, !abandoned))
      .catch((err: unknown) =>
        ctx.logger.warn(
          { delivery: delivery.id, err: { message: (err as Error).message } },
          'could not record a live imaging transmission',
        ),
      );
  }
  return { exchangeId, replayed: false, deliveries: deliveries.length, instances: x.instances };
}

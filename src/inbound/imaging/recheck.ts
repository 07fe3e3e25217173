import type { Config } from '../../config.ts';
import { GatewayError } from '../../errors.ts';
import { DicomStreamCheck, type DicomInstance, type DicomLimits } from '../../imaging/dicom.ts';
import { Handoff } from '../../imaging/handoff.ts';
import { boundaryOf, multipartParts, parseMediaType } from '../../imaging/multipart.ts';
import type { PlaintextSink } from '../../jose/stream-sinks.ts';
import { IMAGING } from '../../protocol/imaging-manifest.ts';

/**
 * The receiver's second look at imaging content: a PlaintextSink that runs
 * the intake's DICOM checks (dicom.ts) on the deciphered stream, one
 * DicomStreamCheck for application/dicom, one per part of a multipart/related
 * study, and collects the instances for comparison with the signed manifest.
 * Nothing is kept but each file's head (DICOM_HEAD_BYTES) while it is read;
 * chunks are looked at by reference and dropped.
 *
 * The media type comes from the content JWE's protected header, which
 * openStream hands to begin() before any plaintext flows (and whose tag
 * check at the end also authenticates it). A failure is only
 * recorded (the stream keeps being deciphered, unchecked) and thrown by
 * instances(), so that an unauthenticated plaintext never decides the
 * answer: the tag, the signed manifest and its digest are checked first.
 * Chunks passed to write() must not be reused by the caller afterwards.
 */
export class DicomRecheck implements PlaintextSink {
  readonly #limits: DicomLimits;
  readonly #maxInstances: number;
  #cty: string | undefined;
  #started = false;
  #single: DicomStreamCheck | undefined;
  #handoff: Handoff | undefined;
  #consumer: Promise<void> | undefined;
  readonly #instances: DicomInstance[] = [];
  #error: unknown;
  #committed = false;

  constructor(
    config: Pick<
      Config,
      'dicomMaxBytes' | 'dicomHeadBytes' | 'dicomInflateMax' | 'dicomInflateConcurrency' | 'imagingMaxInstances'
    >,
  ) {
    this.#limits = {
      maxBytes: config.dicomMaxBytes,
      headBytes: config.dicomHeadBytes,
      inflateMax: config.dicomInflateMax,
      inflateConcurrency: config.dicomInflateConcurrency,
    };
    this.#maxInstances = config.imagingMaxInstances;
  }

  begin(header: Record<string, unknown>): void {
    this.#cty = typeof header.cty === 'string' ? header.cty : undefined;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.#error !== undefined) return;
    if (!this.#started) this.#start();
    try {
      if (this.#single) this.#single.push(chunk);
      else await this.#handoff?.push(chunk);
    } catch (err) {
      this.#fail(err);
    }
  }

  /** The tag verified: finish the checks (never throws; see instances()). */
  async commit(): Promise<void> {
    if (!this.#started) this.#start();
    if (this.#single && this.#error === undefined) {
      try {
        this.#instances.push((await this.#single.end()).instance);
      } catch (err) {
        this.#fail(err);
      }
    }
    this.#handoff?.end();
    await this.#consumer;
    this.#committed = true;
  }

  async discard(): Promise<void> {
    this.#handoff?.close();
    await this.#consumer;
  }

  /** The instances of the content, in order, or the first check that failed. */
  instances(): DicomInstance[] {
    if (this.#error !== undefined) throw this.#error;
    if (!this.#committed) throw new Error('DicomRecheck.instances() before commit');
    return this.#instances;
  }

  #start(): void {
    this.#started = true;
    const media = parseMediaType(this.#cty);
    if (media?.type === IMAGING.dicom) {
      this.#single = new DicomStreamCheck(this.#limits);
    } else if (media?.type === 'multipart/related') {
      try {
        const boundary = boundaryOf(media);
        this.#handoff = new Handoff();
        this.#consumer = this.#consume(this.#handoff, boundary);
      } catch (err) {
        this.#fail(err);
      }
    } else {
      this.#fail(
        new GatewayError(
          'DICOM_INVALID',
          `the content's media type ${JSON.stringify(this.#cty ?? null)} is not DICOM`,
          { expression: 'content' },
        ),
      );
    }
  }

  /** The pull side of a multipart study: each part through its own DicomStreamCheck. */
  async #consume(source: Handoff, boundary: string): Promise<void> {
    let i = 0;
    try {
      for await (const part of multipartParts(source, boundary, { maxParts: this.#maxInstances })) {
        const type = parseMediaType(part.headers['content-type'])?.type;
        if (type !== IMAGING.dicom)
          throw new GatewayError(
            'DICOM_INVALID',
            `content part ${i + 1} is ${type ?? 'untyped'}, not application/dicom`,
            { expression: `content.part[${i}]` },
          );
        const check = new DicomStreamCheck(this.#limits);
        try {
          for await (const b of part.body) check.push(b);
          this.#instances.push((await check.end()).instance);
        } catch (err) {
          throw located(err, i);
        }
        i++;
      }
    } catch (err) {
      this.#fail(err);
    } finally {
      source.close();
    }
  }

  #fail(err: unknown): void {
    if (this.#error !== undefined) return;
    this.#handoff?.close();
    this.#single = undefined;
    this.#error = located(err);
  }
}

/** Name where in the content a check failed (the intake's codes, the receiver's expressions). */
function located(err: unknown, part?: number): unknown {
  if (!(err instanceof GatewayError) || err.expression?.[0]?.startsWith('content')) return err;
  const where = part === undefined ? 'content' : `content.part[${part}]`;
  const expression = err.expression && err.code !== 'BAD_REQUEST' ? `${where}.${err.expression[0]}` : where;
  const prefix = part === undefined ? 'the content' : `content part ${part + 1}`;
  // A multipart framing error (the parser's BAD_REQUEST) is a malformed content here, not a bad request.
  const code = err.code === 'BAD_REQUEST' ? 'DICOM_INVALID' : err.code;
  return new GatewayError(code, `${prefix}: ${err.message}`, { expression, cause: err });
}

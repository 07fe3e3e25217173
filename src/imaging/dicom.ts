import { GatewayError } from '../errors.ts';
import { DicomWalker } from './dicom-walker.ts';
import { required } from '../required.ts';
import {
  DEFLATED,
  identify,
  invalid,
  parseDataSet,
  readFileMeta,
  type DicomIdentity,
  type DicomInstance,
} from './dicom-attributes.ts';
import { inflatePool } from './inflate-pool.ts';

export type { DicomInstance } from './dicom-attributes.ts';

/**
 * The checks one DICOM Part 10 file passes on its way in, run on the stream:
 * the 128-byte preamble and "DICM", the file meta group (0002), and the
 * identifying attributes, read by dicom-parser from a bounded head of the
 * file (DICOM_HEAD_BYTES); a constant-memory walk (dicom-walker.ts) then
 * checks the structure of the rest, so truncation is caught at any size.
 * The head is held back until it has been checked; every byte after it is
 * released as it arrives. The file's bytes are never changed.
 *
 * Deflated transfer syntax (1.2.840.10008.1.2.1.99): the whole file must fit
 * in the head, and it is inflated (to read and check it) under
 * DICOM_INFLATE_MAX, larger ones are refused with 413, in a worker thread
 * (deflated.ts, inflate-pool.ts) so that the event loop never waits for it.
 * It is used for reports and waveforms, which are small.
 */
export interface DicomLimits {
  /** Largest file (413 above). */
  maxBytes: number;
  /** Bytes read into memory to parse the file meta and the identifying attributes. */
  headBytes: number;
  /** Largest inflated data set of a deflated file. */
  inflateMax: number;
  /** Deflated files inflated at once, each in its own worker thread. */
  inflateConcurrency: number;
}

const IMPLICIT_LE = '1.2.840.10008.1.2';
const EXPLICIT_BE = '1.2.840.10008.1.2.2';

export class DicomStreamCheck {
  readonly #limits: DicomLimits;
  #head: Buffer[] = [];
  #headLength = 0;
  #length = 0;
  #walker: DicomWalker | undefined;
  #instance: DicomIdentity | undefined;
  #deflated = false;

  constructor(limits: DicomLimits) {
    this.#limits = limits;
  }

  /** Feed a chunk; returns the chunks that may now pass on (none while the head is being collected). */
  push(chunk: Buffer): Buffer[] {
    this.#length += chunk.length;
    if (this.#length > this.#limits.maxBytes)
      throw new GatewayError(
        'PAYLOAD_TOO_LARGE',
        `a DICOM file may be at most ${this.#limits.maxBytes} bytes (DICOM_MAX_BYTES)`,
      );
    if (this.#instance) {
      if (this.#deflated)
        throw new GatewayError(
          'PAYLOAD_TOO_LARGE',
          `a deflated DICOM file must fit in ${this.#limits.headBytes} bytes`,
        );
      required(this.#walker, 'a walker for every inspected file that is not deflated').update(chunk);
      return [chunk];
    }
    this.#head.push(chunk);
    this.#headLength += chunk.length;
    if (this.#headLength < this.#limits.headBytes) return [];
    const head = this.#takeHead();
    const meta = readFileMeta(head);
    if (meta.transferSyntax === DEFLATED)
      throw new GatewayError(
        'PAYLOAD_TOO_LARGE',
        `a deflated DICOM file must fit in ${this.#limits.headBytes} bytes (DICOM_HEAD_BYTES)`,
      );
    this.#inspect(head, meta, false);
    return [head];
  }

  /** The stream ended: finish the checks; returns the held-back chunks (if the file was smaller than the head) and the instance. */
  async end(): Promise<{ release: Buffer[]; instance: DicomInstance }> {
    const release: Buffer[] = [];
    if (!this.#instance) {
      const head = this.#takeHead();
      const meta = readFileMeta(head);
      if (meta.transferSyntax === DEFLATED) {
        this.#deflated = true;
        const { headBytes, inflateMax, inflateConcurrency } = this.#limits;
        this.#instance = await inflatePool(inflateConcurrency).inspect(head, { headBytes, inflateMax });
      } else this.#inspect(head, meta, true);
      release.push(head);
    }
    if (this.#length === 0) throw invalid('the DICOM file is empty');
    this.#walker?.end();
    const instance = required(this.#instance, 'an instance once the head was inspected');
    return { release, instance: { ...instance, length: this.#length } };
  }

  #takeHead(): Buffer {
    const [first, ...more] = this.#head;
    const head = first && more.length === 0 ? first : Buffer.concat(this.#head);
    this.#head = [];
    return head;
  }

  /** A file that is not deflated: its identity from the head, and the walk from the data set's start. */
  #inspect(head: Buffer, m: ReturnType<typeof readFileMeta>, complete: boolean): void {
    this.#instance = identify(
      m.meta,
      parseDataSet(head, () => complete),
      m.transferSyntax,
    );
    this.#walker = new DicomWalker(
      { explicit: m.transferSyntax !== IMPLICIT_LE, littleEndian: m.transferSyntax !== EXPLICIT_BE },
      m.metaEnd,
    );
    this.#walker.update(head);
  }
}

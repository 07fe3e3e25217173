import { inflateRawSync } from 'node:zlib';
import dicomParser from 'dicom-parser';
import { GatewayError } from '../errors.ts';
import { DicomWalker } from './dicom-walker.ts';
import { required } from '../required.ts';

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
 * DICOM_INFLATE_MAX; larger ones are refused with 413. It is used for
 * reports and waveforms, which are small.
 */
export interface DicomLimits {
  /** Largest file (413 above). */
  maxBytes: number;
  /** Bytes read into memory to parse the file meta and the identifying attributes. */
  headBytes: number;
  /** Largest inflated data set of a deflated file. */
  inflateMax: number;
}

export interface DicomInstance {
  transferSyntax: string;
  sopClassUid: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  modality: string;
  patientId: string | undefined;
  /** Number of the series and instance, when present (for the ImagingStudy). */
  seriesNumber: number | undefined;
  instanceNumber: number | undefined;
  length: number;
}

const DEFLATED = '1.2.840.10008.1.2.1.99';
const IMPLICIT_LE = '1.2.840.10008.1.2';
const EXPLICIT_BE = '1.2.840.10008.1.2.2';
const UID_RE = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;
const CS_RE = /^[A-Z0-9_ ]{1,16}$/;

const invalid = (message: string, expression?: string) => new GatewayError('DICOM_INVALID', message, { expression });

export class DicomStreamCheck {
  readonly #limits: DicomLimits;
  #head: Buffer[] = [];
  #headLength = 0;
  #length = 0;
  #walker: DicomWalker | undefined;
  #instance: Omit<DicomInstance, 'length'> | undefined;
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
    return this.#inspectHead(false);
  }

  /** The stream ended: finish the checks; returns the held-back chunks (if the file was smaller than the head) and the instance. */
  end(): { release: Buffer[]; instance: DicomInstance } {
    const release = this.#instance ? [] : this.#inspectHead(true);
    if (this.#length === 0) throw invalid('the DICOM file is empty');
    this.#walker?.end();
    const instance = required(this.#instance, 'an instance once the head was inspected');
    return { release, instance: { ...instance, length: this.#length } };
  }

  #inspectHead(complete: boolean): Buffer[] {
    const [first, ...more] = this.#head;
    const head = first && more.length === 0 ? first : Buffer.concat(this.#head);
    this.#head = [];
    if (head.length < 132 || head.toString('latin1', 128, 132) !== 'DICM') {
      throw invalid('not a DICOM Part 10 file: no 128-byte preamble followed by "DICM"');
    }
    let meta: dicomParser.DataSet;
    try {
      meta = dicomParser.readPart10Header(head);
    } catch (err) {
      throw invalid(`the file meta information (group 0002) is unreadable: ${describe(err)}`);
    }
    const syntax = text(meta, 'x00020010', '(0002,0010)');
    if (!syntax || !UID_RE.test(syntax))
      throw invalid('the file meta information has no valid Transfer Syntax UID (0002,0010)', '(0002,0010)');
    const metaEnd = (meta as unknown as { position: number }).position;
    this.#deflated = syntax === DEFLATED;
    if (this.#deflated && !complete)
      throw new GatewayError(
        'PAYLOAD_TOO_LARGE',
        `a deflated DICOM file must fit in ${this.#limits.headBytes} bytes (DICOM_HEAD_BYTES)`,
      );
    const dataSet = this.#parse(head, complete);
    this.#instance = identify(meta, dataSet, syntax);
    if (!this.#deflated) {
      this.#walker = new DicomWalker(
        { explicit: syntax !== IMPLICIT_LE, littleEndian: syntax !== EXPLICIT_BE },
        metaEnd,
      );
      this.#walker.update(head);
    }
    return [head];
  }

  /** dicom-parser over the head; a head cut short of the file's end yields the elements read so far. */
  #parse(head: Buffer, complete: boolean): dicomParser.DataSet {
    const inflater = (bytes: Uint8Array, position: number): Uint8Array => {
      let inflated: Buffer;
      const deflated = Buffer.from(bytes.buffer, bytes.byteOffset + position, bytes.length - position);
      try {
        // Bytes after the end of the deflate stream are not part of the data set (real files carry a few); they travel unchanged.
        inflated = inflateRawSync(deflated, { maxOutputLength: this.#limits.inflateMax });
      } catch (err) {
        if (err instanceof GatewayError) throw err;
        if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
          throw new GatewayError(
            'PAYLOAD_TOO_LARGE',
            `the deflated data set inflates beyond ${this.#limits.inflateMax} bytes (DICOM_INFLATE_MAX)`,
          );
        }
        throw new GatewayError('DICOM_TRUNCATED', 'the deflated data set does not inflate (truncated or corrupt)');
      }
      // dicom-parser tolerates a data set cut short; the structural walk does not.
      const walker = new DicomWalker({ explicit: true, littleEndian: true }, 0);
      walker.update(inflated);
      walker.end();
      return Buffer.concat([Buffer.from(bytes.buffer, bytes.byteOffset, position), inflated]);
    };
    try {
      return dicomParser.parseDicom(head, { inflater });
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      const partial = (err as { dataSet?: dicomParser.DataSet }).dataSet;
      // Within a complete file, a parse error is the file's fault; in a head it may just be the cut.
      if (complete || !partial)
        throw new GatewayError(
          complete ? 'DICOM_TRUNCATED' : 'DICOM_INVALID',
          `the DICOM data set does not parse: ${describe(err)}`,
        );
      return partial;
    }
  }
}

function describe(err: unknown): string {
  const e = (err as { exception?: unknown }).exception ?? err;
  return String(e instanceof Error ? e.message : e).slice(0, 120);
}

/**
 * A text element of a parsed data set. dicom-parser records an element whose
 * length runs past the bytes it was given, and throws (a string, not an
 * Error) only when its value is read.
 */
function text(ds: dicomParser.DataSet, tag: string, expression: string): string | undefined {
  try {
    return ds.string(tag);
  } catch {
    throw invalid(`${expression} runs past the end of the bytes read`, expression);
  }
}

function uid(ds: dicomParser.DataSet, tag: string, name: string, expression: string): string {
  const value = text(ds, tag, expression)?.replace(/\0+$/, '').trim();
  if (!value) throw invalid(`${name} ${expression} is missing`, expression);
  if (value.length > 64 || !UID_RE.test(value)) throw invalid(`${name} ${expression} is not a valid UID`, expression);
  return value;
}

function identify(
  meta: dicomParser.DataSet,
  ds: dicomParser.DataSet,
  transferSyntax: string,
): Omit<DicomInstance, 'length'> {
  // The file meta must name the instance; real files sometimes disagree with (0008,0018), which wins.
  uid(meta, 'x00020002', 'Media Storage SOP Class UID', '(0002,0002)');
  uid(meta, 'x00020003', 'Media Storage SOP Instance UID', '(0002,0003)');
  const sopClassUid = uid(ds, 'x00080016', 'SOP Class UID', '(0008,0016)');
  const sopInstanceUid = uid(ds, 'x00080018', 'SOP Instance UID', '(0008,0018)');
  const modality = text(ds, 'x00080060', '(0008,0060)')?.trim();
  if (!modality) throw invalid('Modality (0008,0060) is missing', '(0008,0060)');
  if (!CS_RE.test(modality)) throw invalid('Modality (0008,0060) is not a code string', '(0008,0060)');
  const int = (tag: string, expression: string) => {
    const n = Number.parseInt(text(ds, tag, expression) ?? '', 10);
    return Number.isSafeInteger(n) ? n : undefined;
  };
  return {
    transferSyntax,
    sopClassUid,
    sopInstanceUid,
    studyInstanceUid: uid(ds, 'x0020000d', 'Study Instance UID', '(0020,000D)'),
    seriesInstanceUid: uid(ds, 'x0020000e', 'Series Instance UID', '(0020,000E)'),
    modality,
    patientId: text(ds, 'x00100020', '(0010,0020)')?.trim() || undefined,
    seriesNumber: int('x00200011', '(0020,0011)'),
    instanceNumber: int('x00200013', '(0020,0013)'),
  };
}

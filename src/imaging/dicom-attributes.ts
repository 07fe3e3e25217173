import dicomParser from 'dicom-parser';
import { GatewayError } from '../errors.ts';

/**
 * Reading a DICOM head with dicom-parser: the file meta group (0002) and the
 * identifying attributes of the data set. Shared by the stream check on the
 * event loop (dicom.ts) and the inflation worker (deflated.ts).
 */
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

/** What a file's head says about it; the length comes when the stream ends. */
export type DicomIdentity = Omit<DicomInstance, 'length'>;

export interface FileMeta {
  meta: dicomParser.DataSet;
  transferSyntax: string;
  /** Where the data set begins (after preamble, DICM and the file meta group). */
  metaEnd: number;
}

export const DEFLATED = '1.2.840.10008.1.2.1.99';
const UID_RE = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;
const CS_RE = /^[A-Z0-9_ ]{1,16}$/;

export const invalid = (message: string, expression?: string) =>
  new GatewayError('DICOM_INVALID', message, { expression });

/** The preamble, "DICM" and the file meta group, with its Transfer Syntax UID. */
export function readFileMeta(head: Buffer): FileMeta {
  if (head.length < 132 || head.toString('latin1', 128, 132) !== 'DICM') {
    throw invalid('not a DICOM Part 10 file: no 128-byte preamble followed by "DICM"');
  }
  let meta: dicomParser.DataSet;
  try {
    meta = dicomParser.readPart10Header(head);
  } catch (err) {
    throw invalid(`the file meta information (group 0002) is unreadable: ${describe(err)}`);
  }
  const transferSyntax = text(meta, 'x00020010', '(0002,0010)');
  if (!transferSyntax || !UID_RE.test(transferSyntax))
    throw invalid('the file meta information has no valid Transfer Syntax UID (0002,0010)', '(0002,0010)');
  return { meta, transferSyntax, metaEnd: (meta as unknown as { position: number }).position };
}

/**
 * dicom-parser over a head; a head cut short of the file's end yields the
 * elements read so far. `complete` is asked only after parsing (an inflater
 * may learn it on the way).
 */
export function parseDataSet(
  head: Buffer,
  complete: () => boolean,
  inflater?: (bytes: Uint8Array, position: number) => Uint8Array,
): dicomParser.DataSet {
  try {
    return dicomParser.parseDicom(head, inflater ? { inflater } : {});
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    const partial = (err as { dataSet?: dicomParser.DataSet }).dataSet;
    // Within a complete file, a parse error is the file's fault; in a head it may just be the cut.
    const whole = complete();
    if (whole || !partial)
      throw new GatewayError(
        whole ? 'DICOM_TRUNCATED' : 'DICOM_INVALID',
        `the DICOM data set does not parse: ${describe(err)}`,
      );
    return partial;
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

export function identify(meta: dicomParser.DataSet, ds: dicomParser.DataSet, transferSyntax: string): DicomIdentity {
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

import type { DicomInstance } from './dicom.ts';
import { GatewayError } from '../errors.ts';
import { imagingStudy } from './imaging-study.ts';

/**
 * Does a signed ImagingStudy describe these instances? The study is rebuilt
 * from the instances with the same builder the sender uses (imaging-study.ts)
 * and the identifying fields of both are compared, in order: study UID,
 * subject, counts, and per series its UID and modality, per instance its SOP
 * Instance UID and SOP Class. Other fields (status, numbers, display texts)
 * may differ between versions of the builder without harm.
 */
export function checkStudyMatches(instances: DicomInstance[], signed: Record<string, unknown>): void {
  let rebuilt: Record<string, unknown>;
  try {
    rebuilt = imagingStudy(instances);
  } catch (err) {
    if (err instanceof GatewayError)
      throw new GatewayError('DICOM_INVALID', `the content is not one study a gateway would send: ${err.message}`, {
        expression: 'content',
        cause: err,
      });
    throw err;
  }
  const path = firstDifference(identity(rebuilt), identity(signed), 'content.imagingStudy');
  if (path !== undefined) {
    throw new GatewayError(
      'IMAGING_STUDY_MISMATCH',
      `the DICOM content does not match the ImagingStudy in the signed manifest (at ${path})`,
      { expression: path },
    );
  }
}

type Json = unknown;
const list = (v: unknown): unknown[] | undefined => (Array.isArray(v) ? v : undefined);
const obj = (v: unknown): Record<string, unknown> =>
  v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

/** The identifying fields of an ImagingStudy, in its own shape (so a difference names a FHIR path). */
function identity(study: Record<string, unknown>): Json {
  const s = obj(study);
  return {
    identifier: [{ value: obj(list(s.identifier)?.[0]).value }],
    subject: s.subject,
    numberOfSeries: s.numberOfSeries,
    numberOfInstances: s.numberOfInstances,
    series: list(s.series)?.map((x) => {
      const se = obj(x);
      return {
        uid: se.uid,
        modality: { code: obj(se.modality).code },
        numberOfInstances: se.numberOfInstances,
        instance: list(se.instance)?.map((y) => {
          const i = obj(y);
          return { uid: i.uid, sopClass: { code: obj(i.sopClass).code } };
        }),
      };
    }),
  };
}

/** The path of the first difference between two JSON values, or undefined if equal. */
function firstDifference(a: Json, b: Json, path: string): string | undefined {
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return path;
    for (let i = 0; i < a.length; i++) {
      const d = firstDifference(a[i], b[i], `${path}[${i}]`);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const ka = Object.keys(a).filter((k) => (a as Record<string, Json>)[k] !== undefined);
    const kb = Object.keys(b).filter((k) => (b as Record<string, Json>)[k] !== undefined);
    for (const k of new Set([...ka, ...kb])) {
      const d = firstDifference((a as Record<string, Json>)[k], (b as Record<string, Json>)[k], `${path}.${k}`);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  return a === b ? undefined : path;
}

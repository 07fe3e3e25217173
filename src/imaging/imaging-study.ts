import type { DicomInstance } from './dicom.ts';
import { GatewayError } from '../errors.ts';

/** DICOM's own code system for modalities (FHIR R4 ImagingStudy.modality). */
const DCM = 'http://dicom.nema.org/resources/ontology/DCM';

/**
 * A FHIR R4 ImagingStudy describing what one submission carries: the study,
 * its series and instances (UIDs, modality, SOP class). It travels only in
 * the signed, sealed manifest (it names the patient), never in a row or log.
 * Every instance must belong to the same study.
 */
export function imagingStudy(instances: DicomInstance[]): Record<string, unknown> {
  const first = instances[0];
  if (!first) throw new GatewayError('BAD_REQUEST', 'no DICOM instance in the submission');
  const study = first.studyInstanceUid;
  // Each series holds at least the instance that named it.
  const series = new Map<string, [DicomInstance, ...DicomInstance[]]>();
  instances.forEach((inst, i) => {
    if (inst.studyInstanceUid !== study)
      throw new GatewayError(
        'DICOM_INVALID',
        `instance ${i + 1} belongs to another study: send one study per submission`,
        { expression: `part[${i}].(0020,000D)` },
      );
    const list = series.get(inst.seriesInstanceUid);
    if (list) list.push(inst);
    else series.set(inst.seriesInstanceUid, [inst]);
  });
  const patients = [...new Set(instances.map((i) => i.patientId).filter((p): p is string => p !== undefined))];
  if (patients.length > 1)
    throw new GatewayError('DICOM_INVALID', 'the instances name more than one Patient ID (0010,0020)', {
      expression: '(0010,0020)',
    });
  const coding = (code: string) => ({ system: DCM, code });
  return {
    resourceType: 'ImagingStudy',
    status: 'available',
    identifier: [{ system: 'urn:dicom:uid', value: `urn:oid:${study}` }],
    // ImagingStudy.subject is required; the DICOM Patient ID is the only link the file carries.
    subject: patients[0]
      ? { identifier: { value: patients[0] } }
      : { display: 'unknown (no Patient ID in the DICOM files)' },
    modality: [...new Set(instances.map((i) => i.modality))].map(coding),
    numberOfSeries: series.size,
    numberOfInstances: instances.length,
    series: [...series.entries()].map(([uid, list]) => ({
      uid,
      ...(list[0].seriesNumber !== undefined ? { number: list[0].seriesNumber } : {}),
      modality: coding(list[0].modality),
      numberOfInstances: list.length,
      instance: list.map((inst) => ({
        uid: inst.sopInstanceUid,
        sopClass: { system: 'urn:ietf:rfc:3986', code: `urn:oid:${inst.sopClassUid}` },
        ...(inst.instanceNumber !== undefined ? { number: inst.instanceNumber } : {}),
      })),
    })),
  };
}

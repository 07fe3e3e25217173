import { inflateRawSync } from 'node:zlib';
import { GatewayError } from '../errors.ts';
import { identify, parseDataSet, readFileMeta, type DicomIdentity } from './dicom-attributes.ts';
import { DicomWalker } from './dicom-walker.ts';

export interface DeflatedLimits {
  /** Bytes of the inflated data set dicom-parser reads for the identifying attributes. */
  headBytes: number;
  /** Largest inflated data set (413 above). */
  inflateMax: number;
}

/**
 * The checks of a whole deflated-transfer-syntax file (1.2.840.10008.1.2.1.99):
 * inflate its data set under DICOM_INFLATE_MAX, walk all of it, and read the
 * identifying attributes from its first DICOM_HEAD_BYTES, as for any other
 * file (dicom-parser keeps an object per element, so a data set of millions
 * of tiny elements must not reach it whole). CPU-bound and synchronous: it
 * runs in the inflation workers (inflate-pool.ts), never on the event loop.
 */
export function inspectDeflated(file: Buffer, limits: DeflatedLimits): DicomIdentity {
  const { meta, transferSyntax } = readFileMeta(file);
  let cut = false;
  const inflater = (bytes: Uint8Array, position: number): Uint8Array => {
    let inflated: Buffer;
    const deflated = Buffer.from(bytes.buffer, bytes.byteOffset + position, bytes.length - position);
    try {
      // Bytes after the end of the deflate stream are not part of the data set (real files carry a few); they travel unchanged.
      inflated = inflateRawSync(deflated, { maxOutputLength: limits.inflateMax });
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
        throw new GatewayError(
          'PAYLOAD_TOO_LARGE',
          `the deflated data set inflates beyond ${limits.inflateMax} bytes (DICOM_INFLATE_MAX)`,
        );
      }
      throw new GatewayError('DICOM_TRUNCATED', 'the deflated data set does not inflate (truncated or corrupt)');
    }
    // dicom-parser tolerates a data set cut short; the structural walk does not.
    const walker = new DicomWalker({ explicit: true, littleEndian: true }, 0);
    walker.update(inflated);
    walker.end();
    cut = inflated.length > limits.headBytes;
    const head = cut ? inflated.subarray(0, limits.headBytes) : inflated;
    return Buffer.concat([Buffer.from(bytes.buffer, bytes.byteOffset, position), head]);
  };
  const dataSet = parseDataSet(file, () => !cut, inflater);
  return identify(meta, dataSet, transferSyntax);
}

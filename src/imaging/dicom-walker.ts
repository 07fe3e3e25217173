import { GatewayError } from '../errors.ts';

/**
 * A structural walk over a DICOM data set as it streams past, in constant
 * memory: element headers are read, values are skipped by length, and
 * undefined-length sequences, items and encapsulated pixel data are tracked
 * on a stack until their delimiters. At the end the stream must stop exactly
 * on an element boundary with every container closed: anything else is a
 * truncated or malformed file. (dicom-parser needs the whole buffer, so it
 * only reads the head; this covers the rest, at any size.)
 */

const UNDEFINED = 0xffffffff;
/** Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 §7.1.2). */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV']);
const VR_RE = /^[A-Z]{2}$/;
const MAX_DEPTH = 64;

export interface WalkSyntax {
  explicit: boolean;
  littleEndian: boolean;
}

const truncated = (message: string) => new GatewayError('DICOM_TRUNCATED', message);
const malformed = (message: string) => new GatewayError('DICOM_INVALID', message);

export class DicomWalker {
  readonly #syntax: WalkSyntax;
  /** Bytes still to skip (a value or a defined-length item). */
  #skip: number;
  /** A header split across chunks. */
  #pending: Buffer = Buffer.alloc(0);
  #stack: Array<'seq' | 'item'> = [];

  /** `start`: where the data set begins (after preamble, DICM and the file meta group). */
  constructor(syntax: WalkSyntax, start: number) {
    this.#syntax = syntax;
    this.#skip = start;
  }

  update(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - pos);
        this.#skip -= n;
        pos += n;
        continue;
      }
      // Collect a header: 8 bytes, or 12 for explicit long VRs (decided once 6 bytes are in).
      const need = this.#headerLength(this.#pending, chunk, pos);
      const take = Math.min(need - this.#pending.length, chunk.length - pos);
      this.#pending = Buffer.concat([this.#pending, chunk.subarray(pos, pos + take)]);
      pos += take;
      if (this.#pending.length === need && need === this.#headerLength(this.#pending, chunk, pos)) {
        this.#element(this.#pending);
        this.#pending = Buffer.alloc(0);
      }
    }
  }

  /** The header length implied by what is known so far (8 until the VR is seen). */
  #headerLength(pending: Buffer, chunk: Buffer, pos: number): number {
    if (!this.#syntax.explicit) return 8;
    const have =
      pending.length >= 6 ? pending : Buffer.concat([pending, chunk.subarray(pos, pos + 6 - pending.length)]);
    if (have.length < 6) return 8;
    const group = this.#syntax.littleEndian ? have.readUInt16LE(0) : have.readUInt16BE(0);
    if (group === 0xfffe) return 8;
    return LONG_VRS.has(have.toString('latin1', 4, 6)) ? 12 : 8;
  }

  #element(h: Buffer): void {
    const le = this.#syntax.littleEndian;
    const group = le ? h.readUInt16LE(0) : h.readUInt16BE(0);
    const element = le ? h.readUInt16LE(2) : h.readUInt16BE(2);
    let length: number;
    if (group === 0xfffe) {
      length = le ? h.readUInt32LE(4) : h.readUInt32BE(4);
      if (element === 0xe000) {
        if (this.#stack.at(-1) !== 'seq') throw malformed('an item outside a sequence');
        if (length === UNDEFINED) return this.#push('item');
        this.#skip = length;
        return;
      }
      const expected = element === 0xe00d ? 'item' : element === 0xe0dd ? 'seq' : undefined;
      if (!expected || this.#stack.at(-1) !== expected)
        throw malformed(`an unexpected delimiter (FFFE,${element.toString(16).toUpperCase()})`);
      this.#stack.pop();
      return;
    }
    if (this.#syntax.explicit) {
      const vr = h.toString('latin1', 4, 6);
      if (!VR_RE.test(vr)) throw malformed('an element with an invalid VR');
      length =
        h.length === 12 ? (le ? h.readUInt32LE(8) : h.readUInt32BE(8)) : le ? h.readUInt16LE(6) : h.readUInt16BE(6);
    } else {
      length = le ? h.readUInt32LE(4) : h.readUInt32BE(4);
    }
    if (length === UNDEFINED) return this.#push('seq'); // SQ, encapsulated pixel data or UN: items until (FFFE,E0DD)
    this.#skip = length;
  }

  #push(kind: 'seq' | 'item'): void {
    if (this.#stack.length >= MAX_DEPTH) throw malformed('sequences nested too deeply');
    this.#stack.push(kind);
  }

  /** The stream ended: it must end on a boundary with every container closed. */
  end(): void {
    if (this.#skip > 0) throw truncated(`the file ends ${this.#skip} bytes before the end of an element's value`);
    if (this.#pending.length) throw truncated('the file ends inside an element header');
    if (this.#stack.length) throw truncated('the file ends inside an undefined-length sequence or pixel data');
  }
}

/** Small DICOM Part 10 files built in memory, in each uncompressed transfer syntax. */
export type Syntax = { uid: string; explicit: boolean; le: boolean };
export const SYNTAXES: Syntax[] = [
  { uid: '1.2.840.10008.1.2.1', explicit: true, le: true },
  { uid: '1.2.840.10008.1.2', explicit: false, le: true },
  { uid: '1.2.840.10008.1.2.2', explicit: true, le: false },
];
const LONG = new Set(['OB', 'OW', 'SQ', 'UN', 'UT']);

/** One element in the given syntax (the file meta is always explicit little endian). */
function element(s: Omit<Syntax, 'uid'>, group: number, elem: number, vr: string, value: Buffer): Buffer {
  // UIDs are padded with NUL, text with a space (PS3.5 §6.2).
  const v = value.length % 2 ? Buffer.concat([value, Buffer.from([vr === 'UI' ? 0 : 0x20])]) : value;
  const long = s.explicit && LONG.has(vr);
  const h = Buffer.alloc(s.explicit ? (long ? 12 : 8) : 8);
  const u16 = (n: number, at: number) => (s.le ? h.writeUInt16LE(n, at) : h.writeUInt16BE(n, at));
  const u32 = (n: number, at: number) => (s.le ? h.writeUInt32LE(n, at) : h.writeUInt32BE(n, at));
  u16(group, 0);
  u16(elem, 2);
  if (!s.explicit) u32(v.length, 4);
  else {
    h.write(vr, 4, 'latin1');
    if (long) u32(v.length, 8);
    else u16(v.length, 6);
  }
  return Buffer.concat([h, v]);
}

/** A small Part 10 file: preamble, DICM, file meta, identifying attributes, pixel data. */
export function syntheticDicom(s: Syntax, pixels: number): Buffer {
  const meta = { explicit: true, le: true };
  const ui = (x: Omit<Syntax, 'uid'>, g: number, e: number, uid: string) => element(x, g, e, 'UI', Buffer.from(uid));
  const metaBody = Buffer.concat([
    element(meta, 0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    ui(meta, 0x0002, 0x0002, '1.2.840.10008.5.1.4.1.1.2'),
    ui(meta, 0x0002, 0x0003, '2.25.1'),
    ui(meta, 0x0002, 0x0010, s.uid),
  ]);
  const groupLength = element(meta, 0x0002, 0x0000, 'UL', Buffer.alloc(4));
  groupLength.writeUInt32LE(metaBody.length, 8);
  const data = Buffer.concat([
    ui(s, 0x0008, 0x0016, '1.2.840.10008.5.1.4.1.1.2'),
    ui(s, 0x0008, 0x0018, '2.25.1'),
    element(s, 0x0008, 0x0060, 'CS', Buffer.from('CT')),
    element(s, 0x0010, 0x0020, 'LO', Buffer.from('FUZZ')),
    ui(s, 0x0020, 0x000d, '2.25.2'),
    ui(s, 0x0020, 0x000e, '2.25.3'),
    element(s, 0x0020, 0x0013, 'IS', Buffer.from('1')),
    element(s, 0x7fe0, 0x0010, 'OW', Buffer.alloc(pixels, 7)),
  ]);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), groupLength, metaBody, data]);
}

/**
 * Checkpoints as C2SP signed notes (c2sp.org/signed-note, c2sp.org/tlog-checkpoint):
 *
 *   <origin>\n<tree size>\n<base64 root hash>\n
 *   \n
 *   — <key name> <base64(4-byte key id || signature)>\n
 *
 * Signature type 0x02 (ECDSA, as transparency-dev/witness implements it):
 * ECDSA P-256 over SHA-256 of the note text, ASN.1 DER signature; key id =
 * SHA-256(DER SubjectPublicKeyInfo)[:4]. Pure (no node: imports): the browser
 * verifier uses this file too.
 */

export interface EcJwk {
  kty: string;
  crv?: string;
  x?: string;
  y?: string;
  kid?: string;
}

export interface Checkpoint {
  origin: string;
  size: number;
  rootHash: Uint8Array;
  extensions: string[];
}

export interface NoteSignature {
  name: string;
  keyId: number;
  signature: Uint8Array;
}

export class NoteError extends Error {
  override name = 'NoteError';
}

const EM_DASH = '\u2014';

// ---- encodings (atob/btoa exist in Node and browsers) ----
export function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function fromBase64(text: string, url = false): Uint8Array {
  let t = text;
  if (url)
    t = t
      .replace(/-/g, '+')
      .replace(/_/g, '/')
      .padEnd(Math.ceil(t.length / 4) * 4, '=');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t) || t.length % 4 !== 0) throw new NoteError('invalid base64');
  const s = atob(t);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  // Only canonical encodings: otherwise distinct texts would carry the same bytes.
  if (!url && toBase64(out) !== t) throw new NoteError('non-canonical base64');
  return out;
}

export const utf8 = (s: string) => new TextEncoder().encode(s);

// ---- keys ----
const P256_SPKI_PREFIX = fromBase64('MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE');

/** DER SubjectPublicKeyInfo of a P-256 public JWK. */
export function spkiOfJwk(jwk: EcJwk): Uint8Array {
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.x || !jwk.y)
    throw new NoteError('only EC P-256 keys sign checkpoints');
  const x = fromBase64(jwk.x, true);
  const y = fromBase64(jwk.y, true);
  if (x.length !== 32 || y.length !== 32) throw new NoteError('bad P-256 coordinates');
  const out = new Uint8Array(P256_SPKI_PREFIX.length + 64);
  out.set(P256_SPKI_PREFIX);
  out.set(x, P256_SPKI_PREFIX.length);
  out.set(y, P256_SPKI_PREFIX.length + 32);
  return out;
}

/** C2SP signed-note key id for signature type 0x02 (ECDSA). */
export function noteKeyId(jwk: EcJwk, sha256: (d: Uint8Array) => Uint8Array): number {
  const h = sha256(spkiOfJwk(jwk));
  // The first four bytes, big-endian.
  return new DataView(h.buffer, h.byteOffset, h.byteLength).getUint32(0);
}

/** Raw r||s (PKCS#11, WebCrypto) to ASN.1 DER (Go's ecdsa.SignASN1). */
export function derFromRaw(raw: Uint8Array): Uint8Array {
  if (raw.length !== 64) throw new NoteError('raw P-256 signature must be 64 bytes');
  const int = (b: Uint8Array) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    const v = b.subarray(i);
    const [lead] = v;
    if (lead === undefined) throw new NoteError('empty signature half');
    return lead & 0x80 ? [0x02, v.length + 1, 0, ...v] : [0x02, v.length, ...v];
  };
  const body = [...int(raw.subarray(0, 32)), ...int(raw.subarray(32))];
  return new Uint8Array([0x30, body.length, ...body]);
}

/** ASN.1 DER ECDSA signature back to raw r||s; throws on anything but a strict short-form DER SEQUENCE of two INTEGERs. */
export function rawFromDer(der: Uint8Array): Uint8Array {
  if (der[0] !== 0x30 || der[1] !== der.length - 2) throw new NoteError('signature is not a DER SEQUENCE');
  const out = new Uint8Array(64);
  let o = 2;
  for (let part = 0; part < 2; part++) {
    if (der[o] !== 0x02) throw new NoteError('signature is not two DER INTEGERs');
    const len = der[o + 1];
    if (len === undefined) throw new NoteError('truncated DER INTEGER');
    let v = der.subarray(o + 2, o + 2 + len);
    if (v.length !== len || len === 0) throw new NoteError('truncated DER INTEGER');
    while (v.length > 32 && v[0] === 0) v = v.subarray(1);
    if (v.length > 32) throw new NoteError('DER INTEGER too long for P-256');
    out.set(v, part * 32 + 32 - v.length);
    o += 2 + len;
  }
  if (o !== der.length) throw new NoteError('trailing bytes after DER signature');
  return out;
}

// ---- checkpoint body and note ----
export function checkpointBody(origin: string, size: number, rootHash: Uint8Array): string {
  return `${origin}\n${size}\n${toBase64(rootHash)}\n`;
}

export function parseCheckpoint(body: string): Checkpoint {
  const lines = body.split('\n');
  if (lines.length < 4 || lines[lines.length - 1] !== '')
    throw new NoteError('checkpoint must have origin, size and root hash lines');
  const [origin, sizeText, rootText, ...rest] = lines.slice(0, -1) as [string, string, string, ...string[]];
  if (!origin) throw new NoteError('checkpoint origin is empty');
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText)))
    throw new NoteError('checkpoint tree size is not a decimal number');
  const rootHash = fromBase64(rootText);
  if (rootHash.length !== 32) throw new NoteError('checkpoint root hash is not 32 bytes');
  if (rest.some((l) => l === '')) throw new NoteError('empty extension line');
  return { origin, size: Number(sizeText), rootHash, extensions: rest };
}

export function formatSignedNote(body: string, signatures: NoteSignature[]): string {
  const lines = signatures.map((s) => {
    const blob = new Uint8Array(4 + s.signature.length);
    new DataView(blob.buffer).setUint32(0, s.keyId);
    blob.set(s.signature, 4);
    return `${EM_DASH} ${s.name} ${toBase64(blob)}\n`;
  });
  return `${body}\n${lines.join('')}`;
}

export function parseSignedNote(note: string): { body: string; signatures: NoteSignature[] } {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) throw new NoteError('note contains control characters');
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new NoteError('note has no signature block');
  const body = note.slice(0, split + 1);
  const sigLines = note.slice(split + 2, -1).split('\n');
  const signatures = sigLines.map((line) => {
    const m = /^\u2014 ([^\s+]+) ([A-Za-z0-9+/=]+)$/.exec(line);
    const [, name, encoded] = m ?? [];
    if (name === undefined || encoded === undefined) throw new NoteError('malformed signature line');
    const blob = fromBase64(encoded);
    if (blob.length < 5) throw new NoteError('signature too short');
    const keyId = new DataView(blob.buffer, blob.byteOffset).getUint32(0);
    return { name, keyId, signature: blob.subarray(4) };
  });
  if (signatures.length === 0 || signatures.length > 16) throw new NoteError('a note needs 1 to 16 signatures');
  return { body, signatures };
}

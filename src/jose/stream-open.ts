import { createDecipheriv, createHash, type DecipherGCM } from 'node:crypto';
import { GatewayError } from '../errors.ts';
import { fromB64u, isB64u } from './base64url.ts';
import { checkHeader, parseCompactJwe } from './jwe-header.ts';
import { contentKey, type OpenOptions } from './open.ts';
import { hybridContentKey, isHybridEnvelope, type KemKeyResolver } from './pq/hybrid-jwe.ts';
import { fileSink, type PlaintextSink } from './stream-sinks.ts';

/**
 * The streaming reader of a compact JWE (ECDH-ES + A256GCM, or the protocol
 * v2 hybrid with ML-KEM-768 when the caller gives its ML-KEM keys) of any size.
 * The header is parsed and checked with the same allowlist as open.ts, the
 * CEK is derived in the HSM (open.ts contentKey), and the ciphertext is
 * base64url-decoded and deciphered chunk by chunk into a sink. The sink
 * releases nothing until decipher.final() has verified the tag AND the
 * caller's check (e.g. a signed digest) has passed; on any failure it is
 * discarded.
 */

export interface StreamOpenOptions extends OpenOptions {
  /** The cty the header must carry (e.g. application/dicom). */
  cty?: string;
  /** Largest plaintext accepted (413 above). */
  maxBytes?: number;
  /** Also hash the JWE bytes as read (jweDigest); costs one more SHA-256 pass. */
  hashJwe?: boolean;
  /** Our ML-KEM keys: without them a protocol v2 (hybrid) header is refused like any unknown alg. */
  resolveKemKey?: KemKeyResolver;
  /** The protocol version the caller expects (1: ECDH-ES, 2: hybrid); the other is refused as PROTOCOL_MIXED. */
  version?: 1 | 2;
}

export interface StreamOpened {
  header: Record<string, unknown>;
  kid: string | undefined;
  /** Plaintext length and SHA-256 (computed as it passed). */
  length: number;
  sha256: Buffer;
  /** "sha-256=" + base64url(SHA-256(the JWE bytes exactly as read)) when hashJwe was asked for, and their count. */
  jweDigest: string | undefined;
  jweLength: number;
}

const HEADER_MAX = 16 * 1024; // the protected header with an epk is a few hundred bytes
const SMALL_MAX = 64; // iv and tag segments
const DOT = 0x2e;
const EMPTY = Buffer.alloc(0);
const malformed = (message: string, expression?: string) => new GatewayError('JWE_MALFORMED', message, { expression });

/**
 * base64url across chunk boundaries: whole 4-character groups only; the rest
 * waits. Reads the ciphertext segment straight from the chunk and decodes
 * into one buffer per chunk (this runs on every byte of an imaging study).
 * Node's decoder skips characters outside the alphabet, so a short result
 * betrays them: every skipped character costs at least one byte.
 */
class Base64UrlDecoder {
  #carry = '';
  /** Reused for every chunk: the decipher consumes the decoded bytes at once, so a fresh buffer per chunk would only be garbage. */
  #scratch = EMPTY;
  /** The decoded bytes, in a view that is valid only until the next call. */
  update(chunk: Buffer, start: number, end: number): Buffer {
    const carried = this.#carry.length;
    const whole = carried + end - start - ((carried + end - start) % 4);
    if (whole === 0) {
      this.#carry += chunk.toString('latin1', start, end);
      return EMPTY;
    }
    if (this.#scratch.length < (whole / 4) * 3)
      this.#scratch = Buffer.allocUnsafe(Math.max((whole / 4) * 3, 48 * 1024));
    const out = this.#scratch.subarray(0, (whole / 4) * 3);
    let from = start;
    let written = 0;
    if (carried) {
      from = start + 4 - carried;
      written = out.write(this.#carry + chunk.toString('latin1', start, from), 0, 'base64url');
    }
    const upto = start + whole - carried;
    written += out.write(chunk.toString('latin1', from, upto), written, 'base64url');
    this.#carry = chunk.toString('latin1', upto, end);
    if (written !== out.length || standardAlphabet(chunk, start, end))
      throw malformed('the ciphertext is not base64url', 'ciphertext');
    return out;
  }
  final(): Buffer {
    if (this.#carry.length === 1) throw malformed('the ciphertext is not base64url', 'ciphertext');
    const out = this.#carry ? decodeStrict(this.#carry) : EMPTY;
    this.#carry = '';
    return out;
  }
}

/**
 * Node's base64url decoder also takes '+' and '/' (as '-' and '_'): refused,
 * so that one ciphertext has one encoding. Two memchr passes per chunk.
 */
function standardAlphabet(chunk: Buffer, start: number, end: number): boolean {
  const plus = chunk.indexOf(0x2b, start);
  const slash = chunk.indexOf(0x2f, start);
  return (plus >= 0 && plus < end) || (slash >= 0 && slash < end);
}

/** Buffer.from skips characters outside the alphabet; a short result betrays them. */
function decodeStrict(text: string): Buffer {
  const out = Buffer.from(text, 'base64url');
  if (out.length !== Math.floor((text.length * 3) / 4) || !isB64u(text))
    throw malformed('the ciphertext is not base64url', 'ciphertext');
  return out;
}

interface Started {
  header: Record<string, unknown>;
  kid: string | undefined;
  decipher: DecipherGCM;
}

async function start(protectedB64: string, ek: string, ivB64: string, options: StreamOpenOptions): Promise<Started> {
  if (!isB64u(ivB64)) throw malformed('the initialization vector is not base64url', 'iv');
  // Reuse the compact parser and allowlist on the small segments (ciphertext and tag are checked as they come).
  const jwe = parseCompactJwe(`${protectedB64}.${ek}.${ivB64}..${'A'.repeat(22)}`);
  const v2 = isHybridEnvelope(jwe.header);
  if (options.version !== undefined && (v2 ? 2 : 1) !== options.version)
    throw new GatewayError(
      'PROTOCOL_MIXED',
      `the content envelope is not protocol v${options.version} like the rest of the delivery`,
      { expression: 'header.alg' },
    );
  const resolveKemKey = v2 ? options.resolveKemKey : undefined;
  // Each version's own allowlist: a v1 header carrying ek or kem_kid is refused, not read as v1.
  const accepted = resolveKemKey ? undefined : checkHeader(jwe);
  if (options.cty !== undefined && jwe.header.cty !== options.cty) {
    throw malformed(`cty ${JSON.stringify(jwe.header.cty)} is not ${options.cty}`, 'header.cty');
  }
  const { key, cek } = accepted
    ? await contentKey(accepted, options)
    : await hybridContentKey(jwe, { ...options, resolveKemKey: resolveKemKey as KemKeyResolver });
  try {
    const decipher = createDecipheriv('aes-256-gcm', cek, fromB64u(ivB64), { authTagLength: 16 });
    decipher.setAAD(Buffer.from(protectedB64, 'ascii'));
    return { header: jwe.header, kid: key.kid, decipher };
  } finally {
    cek.fill(0);
  }
}

/**
 * Open a streamed compact JWE into `sink`. `check` runs after the tag has
 * verified and before the sink is committed: throw there to refuse (e.g.
 * a digest that differs from the signed manifest). Returns what was opened;
 * the sink's commit result is the caller's to use.
 */
export async function openStream(
  source: AsyncIterable<Buffer | string>,
  options: StreamOpenOptions,
  sink: PlaintextSink,
  check?: (opened: StreamOpened) => void | Promise<void>,
): Promise<StreamOpened> {
  const jweHash = options.hashJwe ? createHash('sha256') : undefined;
  const plainHash = createHash('sha256');
  let jweLength = 0;
  let length = 0;
  const segments: string[] = [''];
  let started: Started | undefined;
  const decoder = new Base64UrlDecoder();
  const maxBytes = options.maxBytes ?? Number.MAX_SAFE_INTEGER;
  const emit = async (plain: Buffer) => {
    if (!plain.length) return;
    length += plain.length;
    if (length > maxBytes) throw new GatewayError('PAYLOAD_TOO_LARGE', `the content exceeds ${maxBytes} bytes`);
    plainHash.update(plain);
    await sink.write(plain);
  };
  try {
    for await (const raw of source) {
      const chunk = typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw;
      jweHash?.update(chunk);
      jweLength += chunk.length;
      for (let pos = 0; pos < chunk.length;) {
        const seg = segments.length - 1;
        const dot = chunk.indexOf(DOT, pos);
        const end = dot < 0 ? chunk.length : dot;
        if (seg === 3 && started) {
          await emit(started.decipher.update(decoder.update(chunk, pos, end))); // the decoder's view is used up here
        } else {
          const text = segments[seg] + chunk.toString('latin1', pos, end);
          segments[seg] = text;
          const limit = seg === 0 ? HEADER_MAX : SMALL_MAX;
          if (text.length > limit) throw malformed(`JWE segment ${seg + 1} is too long`);
        }
        if (dot < 0) break;
        pos = dot + 1;
        if (seg === 4) throw malformed('not a compact JWE: more than 5 parts');
        segments.push('');
        if (seg === 2) {
          const [header = '', encryptedKey = '', iv = ''] = segments; // all three are complete here
          started = await start(header, encryptedKey, iv, options);
          sink.begin?.(started.header);
        }
      }
    }
    const tagB64 = segments[4];
    if (segments.length !== 5 || tagB64 === undefined || !started)
      throw malformed(`not a compact JWE: ${segments.length} parts instead of 5`);
    await emit(started.decipher.update(decoder.final()));
    if (!isB64u(tagB64) || fromB64u(tagB64).length !== 16)
      throw malformed('the A256GCM authentication tag must be 128 bits', 'tag');
    started.decipher.setAuthTag(fromB64u(tagB64));
    let tail: Buffer;
    try {
      tail = started.decipher.final();
    } catch {
      throw new GatewayError('JWE_DECRYPT_FAILED', 'the content does not decrypt: authentication tag mismatch', {
        expression: 'tag',
      });
    }
    await emit(tail);
    const opened: StreamOpened = {
      header: started.header,
      kid: started.kid,
      length,
      sha256: plainHash.digest(),
      jweDigest: jweHash && 'sha-256=' + jweHash.digest('base64url'),
      jweLength,
    };
    await check?.(opened);
    await sink.commit();
    return opened;
  } catch (err) {
    await sink.discard();
    throw err;
  }
}

/**
 * The brief's file form: decipher into a temporary file beside `dest`, and
 * rename it to `dest` only after the tag (and `check`) verified; on failure
 * the temporary file is deleted.
 */
export async function openStreamToFile(
  source: AsyncIterable<Buffer | string>,
  options: StreamOpenOptions,
  dest: string,
  check?: (opened: StreamOpened) => void | Promise<void>,
): Promise<StreamOpened> {
  return openStream(source, options, await fileSink(dest), check);
}

import { GatewayError } from '../errors.ts';
import { required } from '../required.ts';

/**
 * A streaming multipart/related reader (RFC 2387 / RFC 2046 §5.1), for
 * STOW-RS style uploads and imaging deliveries: each part's body is yielded
 * in pieces as it arrives, so a part of any size passes in constant memory.
 * Consume each part's body before asking for the next part.
 */
export interface MediaType {
  type: string; // lower-case type/subtype
  params: Record<string, string>; // lower-case names
}

export interface Part {
  headers: Record<string, string>;
  body: AsyncGenerator<Buffer>;
}

export interface MultipartLimits {
  maxParts: number;
  maxHeaderBytes?: number;
}

const bad = (message: string) => new GatewayError('BAD_REQUEST', message, { expression: 'body' });

/** Parse a Content-Type header: type/subtype and its parameters (quoted strings unescaped). */
export function parseMediaType(header: string | undefined): MediaType | undefined {
  if (!header) return undefined;
  const m = /^\s*([A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /;\s*([A-Za-z0-9!#$&^_.+-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))\s*/gy;
  const rest = required(m[2], 'the parameters group of a match');
  let end = 0;
  let p: RegExpExecArray | null;
  while ((p = re.exec(rest))) {
    const name = required(p[1], 'the name group of a parameter match');
    params[name.toLowerCase()] =
      p[2] !== undefined
        ? p[2].replace(/\\(.)/g, '$1')
        : required(p[3], 'the token group when the value is not quoted');
    end = re.lastIndex;
  }
  const trailing = rest.slice(end).trim();
  if (trailing !== '' && trailing !== ';') return undefined;
  return { type: required(m[1], 'the type group of a match').toLowerCase(), params };
}

/** The boundary of a multipart content type, checked against RFC 2046's grammar. */
export function boundaryOf(media: MediaType): string {
  const b = media.params.boundary;
  if (!b || b.length > 70 || !/^[0-9A-Za-z'()+_,\-./:=? ]*[0-9A-Za-z'()+_,\-./:=?]$/.test(b)) {
    throw new GatewayError('BAD_REQUEST', 'multipart/related needs a valid boundary parameter', {
      expression: 'Content-Type',
    });
  }
  return b;
}

/** A pull reader over a byte stream with a small look-ahead buffer. */
class Reader {
  readonly #it: AsyncIterator<Buffer | string>;
  #buf: Buffer = Buffer.alloc(0);
  #ended = false;
  constructor(source: AsyncIterable<Buffer | string>) {
    this.#it = source[Symbol.asyncIterator]();
  }
  async more(): Promise<boolean> {
    if (this.#ended) return false;
    const r = await this.#it.next();
    if (r.done) {
      this.#ended = true;
      return false;
    }
    const chunk = typeof r.value === 'string' ? Buffer.from(r.value, 'latin1') : r.value;
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    return true;
  }
  /** Yield everything before `delim`, consume `delim`. */
  async *until(delim: Buffer): AsyncGenerator<Buffer> {
    for (;;) {
      const at = this.#buf.indexOf(delim);
      if (at >= 0) {
        const out = this.#buf.subarray(0, at);
        this.#buf = this.#buf.subarray(at + delim.length);
        if (out.length) yield out;
        return;
      }
      const keep = delim.length - 1;
      if (this.#buf.length > keep) {
        const out = this.#buf.subarray(0, this.#buf.length - keep);
        this.#buf = this.#buf.subarray(this.#buf.length - keep);
        yield out;
      }
      if (!(await this.more())) throw bad('the multipart body ends before its closing boundary');
    }
  }
  /** Everything before `delim`, bounded. */
  async collect(delim: Buffer, max: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const b of this.until(delim)) {
      n += b.length;
      if (n > max) throw bad('a multipart header block is too long');
      parts.push(b);
    }
    return Buffer.concat(parts);
  }
  async peek(n: number): Promise<Buffer> {
    while (this.#buf.length < n) if (!(await this.more())) break;
    return this.#buf.subarray(0, n);
  }
  skip(n: number): void {
    this.#buf = this.#buf.subarray(n);
  }
  /** Drain the rest (the epilogue), bounded so a peer cannot keep us reading forever. */
  async drain(max: number): Promise<void> {
    let n = this.#buf.length;
    this.#buf = Buffer.alloc(0);
    while (await this.more()) {
      n += this.#buf.length;
      this.#buf = Buffer.alloc(0);
      if (n > max) throw bad('too many bytes after the closing boundary');
    }
  }
}

function parseHeaders(block: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of block.split('\r\n')) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw bad('a multipart part header is malformed');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

/** The parts of a multipart body, one at a time. */
export async function* multipartParts(
  source: AsyncIterable<Buffer | string>,
  boundary: string,
  limits: MultipartLimits,
): AsyncGenerator<Part> {
  const reader = new Reader(source);
  const dash = Buffer.from(`--${boundary}`, 'latin1');
  const delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
  const maxHeader = limits.maxHeaderBytes ?? 16 * 1024;
  // The preamble (if any) ends at the first boundary; a body may also start with it directly.
  for await (const _ of reader.until(dash)) {
    // preamble: ignored
  }
  let count = 0;
  for (;;) {
    if ((await reader.peek(2)).toString('latin1') === '--') {
      reader.skip(2);
      await reader.drain(64 * 1024);
      if (count === 0) throw bad('the multipart body has no parts');
      return;
    }
    // Transport padding, then the CRLF that ends the boundary line.
    const padding = await reader.collect(Buffer.from('\r\n'), 256);
    if (!/^[ \t]*$/.test(padding.toString('latin1'))) throw bad('a multipart boundary line is malformed');
    if (++count > limits.maxParts)
      throw new GatewayError('PAYLOAD_TOO_LARGE', `at most ${limits.maxParts} parts per request`);
    let headers: Record<string, string> = {};
    if ((await reader.peek(2)).toString('latin1') === '\r\n') reader.skip(2);
    else headers = parseHeaders((await reader.collect(Buffer.from('\r\n\r\n'), maxHeader)).toString('latin1'));
    const body = reader.until(delimiter);
    yield { headers, body };
    // Whatever the consumer left unread is skipped.
    for await (const _ of body) {
      // drained
    }
  }
}

import { GatewayError } from '../errors.ts';

/**
 * Read a fetch Response body as text, aborting as soon as it exceeds maxBytes:
 * a partner's answer or JWKS must never make us buffer without bound.
 */
export async function readBounded(res: Response, maxBytes: number, what: string): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > maxBytes)
    throw new GatewayError('UNPROCESSABLE', `${what} is ${declared} bytes; the limit is ${maxBytes}`);
  const reader = res.body?.getReader();
  if (!reader) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw new GatewayError('UNPROCESSABLE', `${what} exceeds the limit of ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

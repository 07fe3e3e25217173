/** Buffer's base64url is several times faster than jose's btoa fallback on older runtimes. */
export const b64u = (data: Uint8Array | string): string =>
  (typeof data === 'string'
    ? Buffer.from(data, 'utf8')
    : Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  ).toString('base64url');

export const fromB64u = (s: string): Buffer => Buffer.from(s, 'base64url');

/** Strict base64url: Buffer.from silently skips bad characters, which must not pass. */
export function isB64u(s: string): boolean {
  return /^[A-Za-z0-9_-]*$/.test(s) && s.length % 4 !== 1;
}

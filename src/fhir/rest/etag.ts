import { createHash } from 'node:crypto';

/** A weak entity tag of a serialized representation: equal bytes, equal tag. */
export function etagOf(body: string): string {
  return `W/"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
}

const opaque = (tag: string) => tag.trim().replace(/^W\//, '');

/** If-None-Match (RFC 9110 13.1.2, weak comparison): true when the client already holds this representation. */
export function notModified(ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false;
  if (ifNoneMatch.trim() === '*') return true;
  return ifNoneMatch.split(',').some((t) => opaque(t) === opaque(etag));
}

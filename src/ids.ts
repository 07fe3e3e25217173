import { randomFillSync } from 'node:crypto';

/** Random bytes for ids, drawn a block at a time as node:crypto's randomUUID does: a draw per id costs more than the id. */
const RANDOM_BLOCK = Buffer.alloc(2560);
let randomOffset = RANDOM_BLOCK.length;

/**
 * RFC 9562 UUID version 7: 48 bits of Unix milliseconds, then 74 random
 * bits. Used for the primary keys of the hot tables (exchanges, deliveries,
 * inbox messages) and the job keys derived from them: time-ordered keys are
 * appended at the right edge of their B-tree indexes instead of landing on
 * a random page each, so an insert dirties one hot page rather than a cold
 * one, and after a checkpoint it does not write a full-page image of a new
 * index page into the WAL for every row. Within one millisecond the order
 * is random, which is fine: nothing relies on it.
 */
export function uuidv7(now = Date.now()): string {
  if (randomOffset + 10 > RANDOM_BLOCK.length) {
    randomFillSync(RANDOM_BLOCK);
    randomOffset = 0;
  }
  const b = Buffer.allocUnsafe(16);
  RANDOM_BLOCK.copy(b, 6, randomOffset, randomOffset + 10);
  randomOffset += 10;
  b.writeUIntBE(now, 0, 6);
  b.writeUInt8((b.readUInt8(6) & 0x0f) | 0x70, 6); // version 7
  b.writeUInt8((b.readUInt8(8) & 0x3f) | 0x80, 8); // RFC 9562 variant
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/** The longest identifier (partner id, URL, kid, name) the gateway looks up. */
export const MAX_IDENTIFIER_LENGTH = 2048;

/**
 * Text a request may carry in a path parameter or query value: bounded and
 * free of control characters (PostgreSQL text cannot hold NUL, and no id,
 * URL, date or cursor contains one). It may be empty.
 */
export function isPlainText(value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_IDENTIFIER_LENGTH && !CONTROL_CHARACTER.test(value);
}

/**
 * An identifier that can name something the gateway holds: non-empty plain
 * text. Anything else names nothing, whoever sent it.
 */
export function isPlainIdentifier(value: unknown): value is string {
  return isPlainText(value) && value.length > 0;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Any RFC 9562 UUID in its canonical 8-4-4-4-12 hex form (either case): what a uuid column accepts without error. */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

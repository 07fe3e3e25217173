import { GatewayError } from '../errors.ts';
import { isUuid } from '../ids.ts';

/** Where a page of GET /inbox/messages ends: the last message's receive time and id (keyset pagination). */
export interface InboxCursor {
  receivedAt: Date;
  id: string;
}

/** The cursor as the `next` of a page: the instant as toISOString() writes it, "_", the message id. */
export function formatInboxCursor(c: InboxCursor): string {
  return `${c.receivedAt.toISOString()}_${c.id}`;
}

const CURSOR = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)_(.{36})$/;
/** No message was received before the epoch; four-digit years end with 9999. */
const EARLIEST = Date.UTC(1970, 0, 1);

/**
 * Read back a cursor this gateway wrote, and nothing else: the instant must
 * be a real one in the form toISOString() writes (so 2026-02-30 or an
 * expanded year like -271821 is refused here, not by PostgreSQL) and the id
 * a UUID. 400 INVALID_VALUE naming `before` otherwise.
 */
export function parseInboxCursor(text: unknown): InboxCursor {
  const m = typeof text === 'string' ? CURSOR.exec(text) : null;
  const at = m ? new Date(m[1] as string) : undefined;
  if (!m || !at || Number.isNaN(at.getTime()) || at.toISOString() !== m[1] || at.getTime() < EARLIEST || !isUuid(m[2]))
    throw new GatewayError('INVALID_VALUE', 'before must be a cursor from a previous page (its next)', {
      expression: 'before',
    });
  return { receivedAt: at, id: m[2] as string };
}

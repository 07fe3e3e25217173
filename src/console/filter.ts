import { GatewayError } from '../errors.ts';
import { isPlainIdentifier } from '../ids.ts';
import type { DeliveryFilter } from '../outbound/delivery-admin.ts';

const STATES = new Set(['pending', 'delivered', 'failed']);
// What a datetime-local control sends (read as UTC), or a full ISO instant.
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z)?$/;

function instant(value: unknown, name: string): Date | undefined {
  if (value === undefined || value === '') return undefined;
  const text = String(value);
  const d = INSTANT.test(text) ? new Date(text.endsWith('Z') ? text : `${text}Z`) : undefined;
  if (!d || Number.isNaN(d.getTime()))
    throw new GatewayError('INVALID_VALUE', `${name} must be a date and time such as 2026-01-31T08:00`, {
      expression: name,
    });
  return d;
}

/** The console's delivery filter from its query string; a value it cannot read is a 400, never ignored. */
export function consoleFilter(query: Record<string, unknown>): DeliveryFilter {
  const f: DeliveryFilter = {};
  const { state, partner } = query;
  if (state !== undefined && state !== '') {
    if (typeof state !== 'string' || !STATES.has(state))
      throw new GatewayError('INVALID_VALUE', 'state must be pending, delivered or failed', { expression: 'state' });
    f.state = state;
  }
  if (partner !== undefined && partner !== '') {
    if (!isPlainIdentifier(partner))
      throw new GatewayError('INVALID_VALUE', 'partner must be a partner id', { expression: 'partner' });
    f.partner = partner;
  }
  const since = instant(query.since, 'since');
  const until = instant(query.until, 'until');
  if (since) f.since = since;
  if (until) f.until = until;
  return f;
}

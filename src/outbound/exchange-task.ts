import type { Task } from 'fhir/r4.js';
import { PARTNER_ID_SYSTEM } from '../fhir/message-header.ts';
import type { ExchangeView } from './exchange-view.ts';

export const EXCHANGE_ID_SYSTEM = 'urn:fhir-gateway:exchange';
export const DELIVERY_STATE_SYSTEM = 'urn:fhir-gateway:delivery-state';

/**
 * An exchange as a FHIR Task: the sending of one Bundle, with one output per
 * recipient (its delivery state, and the partner). Task.status: in-progress
 * while any recipient is pending, completed when all were delivered, failed
 * otherwise; businessStatus counts the states.
 */
export function exchangeTask(view: ExchangeView): Task {
  const states = view.recipients.map((r) => r.state);
  const status = states.includes('pending')
    ? 'in-progress'
    : states.every((s) => s === 'delivered')
      ? 'completed'
      : 'failed';
  const counts = (['delivered', 'pending', 'failed'] as const)
    .map((s) => [s, states.filter((x) => x === s).length] as const)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${s}`);
  const lastChange = view.recipients
    .flatMap((r) => [r.delivered_at, ...r.attempts.map((a) => a.at)])
    .filter((t): t is string => t !== null)
    .sort()
    .at(-1);
  return {
    resourceType: 'Task',
    id: view.id,
    identifier: [{ system: EXCHANGE_ID_SYSTEM, value: view.id }],
    status,
    ...(counts.length ? { businessStatus: { text: counts.join(', ') } } : {}),
    intent: 'order',
    code: { text: `send a ${view.bundle_type} Bundle (${view.content_digest}, ${view.content_length} bytes)` },
    authoredOn: view.created,
    lastModified: lastChange ?? view.created,
    ...(view.recipients.length
      ? {
          output: view.recipients.map((r) => ({
            type: { coding: [{ system: DELIVERY_STATE_SYSTEM, code: r.state }], text: `delivery ${r.delivery}` },
            valueReference: {
              type: 'Organization',
              identifier: { system: PARTNER_ID_SYSTEM, value: r.partner },
              display: r.partner,
            },
          })),
        }
      : {}),
  };
}

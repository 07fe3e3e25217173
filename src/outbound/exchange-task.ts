import type { Task } from 'fhir/r4.js';
import { PARTNER_ID_SYSTEM } from '../fhir/message-header.ts';
import { inboxMessagePath } from '../fhir/views.ts';
import type { DeliveryView, ExchangeView } from './exchange-view.ts';

export const EXCHANGE_ID_SYSTEM = 'urn:fhir-gateway:exchange';
export const DELIVERY_STATE_SYSTEM = 'urn:fhir-gateway:delivery-state';
/** The code of a response message (MessageHeader.response.code: ok, transient-error, fatal-error). */
export const RESPONSE_CODE_SYSTEM = 'http://hl7.org/fhir/response-code';

const partnerOf = (r: DeliveryView) => ({
  type: 'Organization',
  identifier: { system: PARTNER_ID_SYSTEM, value: r.partner },
  display: r.partner,
});

/** One recipient's outputs: its delivery state, processed once its EHR took it in, and each response message. */
function outputs(baseUrl: string, r: DeliveryView): NonNullable<Task['output']> {
  return [
    {
      type: { coding: [{ system: DELIVERY_STATE_SYSTEM, code: r.state }], text: `delivery ${r.delivery}` },
      valueReference: partnerOf(r),
    },
    ...(r.processed_at
      ? [
          {
            type: {
              coding: [{ system: DELIVERY_STATE_SYSTEM, code: 'processed' }],
              text: `delivery ${r.delivery} processed (${r.processed_via ?? 'receipted'}) at ${r.processed_at}`,
            },
            valueReference: partnerOf(r),
          },
        ]
      : []),
    ...r.responses.map((m) => ({
      type: {
        coding: [{ system: RESPONSE_CODE_SYSTEM, code: m.code }],
        text: `response to delivery ${r.delivery} from ${r.partner}`,
      },
      valueReference: { reference: `${baseUrl}${inboxMessagePath(m.message)}`, type: 'Bundle' },
    })),
  ];
}

/**
 * An exchange as a FHIR Task: the sending of one Bundle (or one DICOM study), with outputs per
 * recipient (its delivery state and the partner; `processed` once the
 * partner's processed receipt is in; each response message, by the Bundle in
 * our inbox). Task.status: in-progress while any recipient is pending,
 * completed when all were delivered, failed otherwise; businessStatus counts
 * the states and the processed recipients.
 */
export function exchangeTask(view: ExchangeView, baseUrl: string): Task {
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
  const processed = view.recipients.filter((r) => r.processed_at !== null).length;
  if (processed > 0) counts.push(`${processed} processed`);
  const lastChange = view.recipients
    .flatMap((r) => [r.delivered_at, ...r.attempts.map((a) => a.at), ...r.events.map((e) => e.at)])
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
    code: {
      text: view.imaging
        ? `send a DICOM study of ${view.imaging.instances} instance(s) (${view.content_digest}, ${view.content_length} bytes)`
        : `send a ${view.bundle_type} Bundle (${view.content_digest}, ${view.content_length} bytes)`,
    },
    authoredOn: view.created,
    lastModified: lastChange ?? view.created,
    ...(view.recipients.length ? { output: view.recipients.flatMap((r) => outputs(baseUrl, r)) } : {}),
  };
}

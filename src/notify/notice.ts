import { createHash } from 'node:crypto';
import type { ExchangeEventKind } from '../outbound/exchange-events.ts';

/** The event an exchange-state response message carries (MessageHeader.eventUri). */
export const EXCHANGE_STATE_EVENT = 'urn:fhir-gateway:exchange-state';

export interface NoticeInput {
  notificationId: string;
  exchangeId: string;
  kind: ExchangeEventKind;
  at: Date;
  /** The MessageHeader.id of the message the exchange carried (what the response names). */
  messageHeaderId: string | null;
  detail: Record<string, string | number | null>;
  /** The gateway's FHIR base, for the focus reference. */
  fhirBase: string;
  org: string;
}

const WHY: Partial<Record<ExchangeEventKind, string>> = {
  failed: 'the partner refused the message or every delivery attempt failed',
  expired: 'the message could not be delivered before the delivery horizon passed',
};

/**
 * One exchange state change as a FHIR response message (id-only: ids and
 * codes, never content). Delivered and processed answer `ok`; a received
 * response names the partner's response message (its code); failed and
 * expired are the non-delivery notice: `fatal-error` with an
 * OperationOutcome saying why.
 */
export function responseMessage(n: NoticeInput): Record<string, unknown> {
  const task = `${n.fhirBase}/Task/${n.exchangeId}`;
  const fatal = n.kind === 'failed' || n.kind === 'expired';
  const outcomeUrl = `urn:uuid:${derivedUuid(n.notificationId, 'outcome')}`;
  const code = n.kind === 'response-received' ? String(n.detail['code'] ?? 'ok') : fatal ? 'fatal-error' : 'ok';
  const header: Record<string, unknown> = {
    resourceType: 'MessageHeader',
    id: n.notificationId,
    eventUri: EXCHANGE_STATE_EVENT,
    source: { endpoint: n.fhirBase, name: n.org },
    focus: [{ reference: task }],
    response: {
      identifier: n.messageHeaderId ?? n.exchangeId,
      code,
      ...(fatal ? { details: { reference: outcomeUrl } } : {}),
    },
    extension: [
      { url: `${EXCHANGE_STATE_EVENT}:state`, valueCode: n.kind },
      ...(n.kind === 'response-received' && typeof n.detail['message'] === 'string'
        ? [{ url: `${EXCHANGE_STATE_EVENT}:response-message`, valueString: n.detail['message'] }]
        : []),
    ],
  };
  const entry: Array<Record<string, unknown>> = [{ fullUrl: `urn:uuid:${n.notificationId}`, resource: header }];
  if (fatal)
    entry.push({
      fullUrl: outcomeUrl,
      resource: {
        resourceType: 'OperationOutcome',
        issue: [
          {
            severity: 'fatal',
            code: n.kind === 'expired' ? 'timeout' : 'transient',
            diagnostics: WHY[n.kind],
            details: { text: n.kind },
          },
        ],
      },
    });
  return {
    resourceType: 'Bundle',
    id: n.notificationId,
    type: 'message',
    timestamp: n.at.toISOString(),
    identifier: { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${n.notificationId}` },
    entry,
  };
}

/** A stable second id for the notice's OperationOutcome, so every retry sends the same message. */
function derivedUuid(id: string, label: string): string {
  const h = createHash('sha256').update(`${id}:${label}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

import { appendAudit } from '../../audit/append.ts';
import type { PoolClient, Queryable } from '../../db/pool.ts';
import { GatewayError } from '../../errors.ts';
import { messageResponse, type ResponseCode } from '../../fhir/message-header.ts';
import { isUuid } from '../../ids.ts';
import type { ExchangeClaims } from '../../protocol/wire.ts';
import { recordExchangeEvent } from '../exchange-events.ts';
import { answeredDelivery, requireRecorded } from './answered-delivery.ts';

export interface CorrelatedResponse {
  delivery: string;
  exchange: string;
  code: ResponseCode;
}

const RESPONSE = 'content.entry[0].resource.response';
const unmatched = (message: string, expression: string) =>
  new GatewayError('RESPONSE_UNMATCHED', message, { expression });

/**
 * A received message whose signed claims name one of our deliveries
 * (response_to, response_exchange) is that delivery's response: it must
 * answer a message we sent to the partner that signed it, and its
 * MessageHeader.response.identifier must be that message's MessageHeader.id.
 * Only the signed claims correlate: a response message without them is an
 * ordinary message.
 */
export function responseCorrelation(db: Queryable) {
  return {
    async check(claims: ExchangeClaims): Promise<CorrelatedResponse | undefined> {
      const { response_to: delivery, response_exchange: exchange } = claims;
      if (delivery === undefined && exchange === undefined) return undefined;
      for (const [name, value] of [
        ['response_to', delivery],
        ['response_exchange', exchange],
      ] as const)
        if (typeof value !== 'string' || !isUuid(value))
          throw new GatewayError('CLAIMS_INVALID', `${name} must be a delivery or exchange id (a UUID)`, {
            expression: name,
          });
      const sent = await answeredDelivery(db, delivery as string, claims.iss);
      if (!sent || sent.exchangeId !== exchange)
        throw unmatched(`response_to names no message this gateway sent to ${claims.iss}`, 'response_to');
      const response = messageResponse(claims.content as Record<string, unknown>);
      if (!response) throw unmatched('the claims name a response, but the content is no response message', RESPONSE);
      if (sent.messageHeaderId !== response.identifier)
        throw unmatched(
          'MessageHeader.response.identifier is not the MessageHeader.id of the message response_to names',
          `${RESPONSE}.identifier`,
        );
      // Valid, but early: the answered delivery's own receipt is not recorded yet.
      requireRecorded(sent);
      return { delivery: delivery as string, exchange: exchange as string, code: response.code };
    },

    /** On the transaction that stores the response: its exchange event and audit entry. */
    async record(
      tx: PoolClient,
      r: CorrelatedResponse & { messageId: string; at: Date; sender: string },
    ): Promise<void> {
      await recordExchangeEvent(tx, {
        exchangeId: r.exchange,
        deliveryId: r.delivery,
        kind: 'response-received',
        at: r.at,
        detail: { message: r.messageId, code: r.code },
      });
      await appendAudit(tx, [
        {
          type: 'delivery.response',
          outcome: 'success',
          agent: { type: 'partner', id: r.sender },
          entity: [
            { type: 'delivery', id: r.delivery },
            { type: 'exchange', id: r.exchange },
            { type: 'inbox-message', id: r.messageId },
          ],
          detail: { code: r.code },
        },
      ]);
    },
  };
}

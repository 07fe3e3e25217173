import { GatewayError } from '../errors.ts';
import { parseFhirJson } from '../fhir/json.ts';
import { messageResponse, RESPONSE_IDENTIFIER_EXPRESSION, type ResponseCode } from '../fhir/message-header.ts';
import type { Recipient, WantedRecipient } from './submission.ts';

/**
 * A response message goes back the way the message it answers came: to the
 * partner that sent it, with the correlation (that message's delivery id and
 * exchange id, as received) in the signed claims. The received message is
 * found by the caller, which knows whose inbox the submitting client sees.
 */
export interface AnsweredMessage {
  /** The inbox message the response answers. */
  messageId: string;
  /** The partner that sent it: the response's one recipient. */
  sender: string;
  /** Its delivery id (the sender's jti) and the sender's exchange id. */
  delivery: string;
  exchange: string;
}

/** The received message with this MessageHeader.id, among those the submitting client may see. */
export type FindAnswered = (messageHeaderId: string) => Promise<AnsweredMessage | undefined>;

export interface ResponseRoute {
  answered: AnsweredMessage;
  code: ResponseCode;
  /** Who the response goes to: the answered message's sender. */
  wanted: WantedRecipient[];
}

/** For a response message, the message it answers and its one recipient; undefined for any other content. */
export async function responseRoute(
  bundle: Record<string, unknown>,
  find: FindAnswered | undefined,
): Promise<ResponseRoute | undefined> {
  const response = messageResponse(bundle);
  if (!response) return undefined;
  const answered = find ? await find(response.identifier) : undefined;
  if (!answered)
    throw new GatewayError(
      'RESPONSE_UNMATCHED',
      `MessageHeader.response.identifier ${JSON.stringify(response.identifier)} names no message this client received`,
      { expression: RESPONSE_IDENTIFIER_EXPRESSION },
    );
  return {
    answered,
    code: response.code,
    wanted: [{ refs: [answered.sender], expression: RESPONSE_IDENTIFIER_EXPRESSION }],
  };
}

/** Recipients named explicitly for a response must be the partner it answers, and no one else. */
export function checkResponseRecipients(route: ResponseRoute, recipients: Recipient[]): void {
  const other = recipients.find((r) => r.partner.id !== route.answered.sender);
  if (other)
    throw new GatewayError(
      'UNPROCESSABLE',
      `a response goes back to ${route.answered.sender}, which sent the message it answers, not to ${other.partner.id}`,
      { expression: 'recipient' },
    );
}

/** The client a response from the local EHR (its answer to a forwarded message) is submitted as. */
export const LOCAL_FHIR_CLIENT = 'local-fhir';

/**
 * The local EHR's answer to a forwarded message, parsed (with the intake's
 * guards) when it is a response message Bundle; undefined for any other
 * answer (an OperationOutcome, nothing, or not JSON), which is not routed.
 */
export function responseAnswer(text: string, maxDepth: number): Record<string, unknown> | undefined {
  let answer: unknown;
  try {
    answer = parseFhirJson(text, maxDepth);
  } catch {
    return undefined;
  }
  if (!answer || typeof answer !== 'object' || Array.isArray(answer)) return undefined;
  const bundle = answer as Record<string, unknown>;
  return bundle.resourceType === 'Bundle' && bundle.type === 'message' && messageResponse(bundle) ? bundle : undefined;
}

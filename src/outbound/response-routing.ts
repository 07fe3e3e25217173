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

/**
 * For a response to a message this client received, that message and its one
 * recipient. Undefined for any other content, and for a response to a message
 * the gateway did not carry to this client: that one is an ordinary message,
 * routed like any other (its destination, or the recipients named).
 */
export async function responseRoute(
  bundle: Record<string, unknown>,
  find: FindAnswered | undefined,
): Promise<ResponseRoute | undefined> {
  const response = messageResponse(bundle);
  const answered = response && find ? await find(response.identifier) : undefined;
  if (!response || !answered) return undefined;
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

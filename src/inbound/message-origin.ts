import { GatewayError } from '../errors.ts';
import type { Directory, Partner } from '../directory/directory.ts';
import { formatIdentifier, identifierNames, messageOrigin } from '../fhir/message-header.ts';

const HEADER = 'content.entry[0].resource';

/**
 * A received message's MessageHeader must claim the partner that signed it
 * (the envelope's iss): a sender.identifier must name that partner (its id,
 * or its registered identifier), and source.endpoint must not name another
 * partner, nor us. Else the EHR would record a record signed by one hospital
 * as coming from another.
 */
export async function checkReceivedOrigin(
  content: unknown,
  partner: Partner,
  us: string,
  directory: Pick<Directory, 'resolve'>,
): Promise<void> {
  if (!content || typeof content !== 'object' || (content as { type?: unknown }).type !== 'message') return;
  const { sender, sourceEndpoint } = messageOrigin(content as Record<string, unknown>);
  const iss = partner.id;
  if (sender && !identifierNames(sender, partner))
    throw new GatewayError(
      'SENDER_MISMATCH',
      `MessageHeader.sender.identifier ${JSON.stringify(formatIdentifier(sender))} is not the signing partner ${iss}`,
      { expression: `${HEADER}.sender.identifier` },
    );
  if (sourceEndpoint === undefined || sourceEndpoint === iss || sourceEndpoint === partner.endpoint) return;
  const other =
    sourceEndpoint === us
      ? us
      : (await directory.resolve([sourceEndpoint])).find(
          (p) => p.id === sourceEndpoint || p.endpoint === sourceEndpoint,
        )?.id;
  if (other !== undefined)
    throw new GatewayError(
      'SENDER_MISMATCH',
      `MessageHeader.source.endpoint names ${other}, but the content is signed by ${iss}`,
      { expression: `${HEADER}.source.endpoint` },
    );
}

import { GatewayError } from '../errors.ts';
import type { Directory } from '../directory/directory.ts';
import { formatIdentifier, identifierNames, messageOrigin, type KnownOrganisation } from '../fhir/message-header.ts';

/** This gateway's organisation: ORG_ID, and ORG_IDENTIFIER (system|value) when configured. */
export function ourOrganisation(config: { org: string; orgIdentifier?: string | undefined }): KnownOrganisation {
  const raw = config.orgIdentifier;
  const bar = raw?.indexOf('|') ?? -1;
  return raw && bar > 0 && bar < raw.length - 1
    ? { id: config.org, identifier: { system: raw.slice(0, bar), value: raw.slice(bar + 1) } }
    : { id: config.org };
}

const HEADER = 'Bundle.entry[0].resource';

/**
 * The message's claimed origin must be this organisation. The signed bytes
 * are delivered verbatim, so the gateway checks and refuses; it never
 * rewrites MessageHeader. A sender.identifier must name us (ORG_ID, or
 * ORG_IDENTIFIER); source.endpoint names the sending application and must
 * not be a partner's id or inbox (that would claim another hospital sent it).
 */
export async function checkMessageOrigin(
  us: KnownOrganisation,
  bundle: Record<string, unknown>,
  directory: Pick<Directory, 'resolve'>,
): Promise<void> {
  const { sender, sourceEndpoint } = messageOrigin(bundle);
  if (sender && !identifierNames(sender, us))
    throw new GatewayError(
      'MESSAGE_ORIGIN_MISMATCH',
      `MessageHeader.sender.identifier ${JSON.stringify(formatIdentifier(sender))} names another organisation than this gateway's (${us.id})`,
      { expression: `${HEADER}.sender.identifier` },
    );
  if (sourceEndpoint === undefined || sourceEndpoint === us.id) return;
  const named = (await directory.resolve([sourceEndpoint])).find(
    (p) => p.id === sourceEndpoint || p.endpoint === sourceEndpoint,
  );
  if (named)
    throw new GatewayError(
      'MESSAGE_ORIGIN_MISMATCH',
      `MessageHeader.source.endpoint names partner ${named.id}, not this gateway's organisation (${us.id})`,
      { expression: `${HEADER}.source.endpoint` },
    );
}

import { GatewayError } from '../errors.ts';
import { PARTNER_ID_SYSTEM } from '../fhir/message-header.ts';

const IDENTIFIER_PART = /^[\x21-\x7e]{1,256}$/;

/** A registered identifier: a system (a URI other than the partner-id system) and a value, both plain text. */
export function partnerIdentifier(
  v: { system?: unknown; value?: unknown } | undefined,
): { system: string; value: string } | undefined {
  if (v === undefined || v === null) return undefined;
  const { system, value } = v;
  if (typeof system !== 'string' || !IDENTIFIER_PART.test(system) || !/^[a-z][a-z0-9+.-]*:/i.test(system))
    throw new GatewayError('INVALID_VALUE', 'identifier.system must be a URI (e.g. http://hl7.org/fhir/sid/us-npi)', {
      expression: 'identifier.system',
    });
  if (system === PARTNER_ID_SYSTEM)
    throw new GatewayError('INVALID_VALUE', `${PARTNER_ID_SYSTEM} names the partner id itself; leave identifier out`, {
      expression: 'identifier.system',
    });
  if (typeof value !== 'string' || !IDENTIFIER_PART.test(value))
    throw new GatewayError('INVALID_VALUE', 'identifier.value must be 1 to 256 printable characters without spaces', {
      expression: 'identifier.value',
    });
  return { system, value };
}

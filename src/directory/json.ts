import type { Endpoint, Organization } from 'fhir/r4.js';
import { GatewayError } from '../errors.ts';
import type { PartnerInput } from './directory.ts';
import type { Partner } from './store.ts';
import { PARTNER_ID_SYSTEM } from '../fhir/message-header.ts';

/** The admin API's view of a partner (snake_case, as in the request bodies). */
export function partnerJson(p: Partner) {
  return {
    id: p.id,
    name: p.name,
    endpoint: p.endpoint,
    ...(p.jwksUri ? { jwks_uri: p.jwksUri } : { jwks: p.jwks }),
    status: p.status,
    ...(p.identifier ? { identifier: p.identifier } : {}),
    created: p.createdAt.toISOString(),
    updated: p.updatedAt.toISOString(),
  };
}

/** The same partner as FHIR: an Organization with its Endpoint contained. */
export function partnerFhir(p: Partner): Organization {
  const endpoint: Endpoint = {
    resourceType: 'Endpoint',
    id: 'inbox',
    status: p.status === 'active' ? 'active' : 'suspended',
    connectionType: { system: 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type', code: 'hl7-fhir-msg' },
    payloadType: [{ text: 'application/jose (docs/PROTOCOL.md v1)' }],
    address: p.endpoint,
    ...(p.jwksUri ? { extension: [{ url: 'urn:fhir-gateway:jwks-uri', valueUrl: p.jwksUri }] } : {}),
  };
  return {
    resourceType: 'Organization',
    identifier: [{ system: PARTNER_ID_SYSTEM, value: p.id }, ...(p.identifier ? [p.identifier] : [])],
    active: p.status === 'active',
    name: p.name,
    contained: [endpoint],
    endpoint: [{ reference: '#inbox' }],
  };
}

/** Parse an admin request body into PartnerInput (the id may come from the path). */
export function partnerInput(body: unknown, id?: string): PartnerInput {
  if (!body || typeof body !== 'object' || Array.isArray(body))
    throw new GatewayError('BAD_REQUEST', 'expected a JSON object with id, endpoint and jwks_uri or jwks');
  const b = body as Record<string, unknown>;
  if (id !== undefined && b.id !== undefined && b.id !== id)
    throw new GatewayError('INVALID_VALUE', 'the id in the body differs from the id in the path', { expression: 'id' });
  const str = (k: string) => {
    if (b[k] === undefined) return undefined;
    if (typeof b[k] !== 'string') throw new GatewayError('INVALID_VALUE', `${k} must be a string`, { expression: k });
    return b[k] as string;
  };
  return {
    id: id ?? (str('id') as string),
    name: str('name'),
    endpoint: str('endpoint') as string,
    jwksUri: str('jwks_uri'),
    jwks: b.jwks,
    status: str('status') as PartnerInput['status'],
    ...(b.identifier === undefined ? {} : { identifier: identifierInput(b.identifier) }),
  };
}

function identifierInput(v: unknown): NonNullable<PartnerInput['identifier']> {
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw new GatewayError('INVALID_VALUE', 'identifier must be an object with system and value', {
      expression: 'identifier',
    });
  return v as NonNullable<PartnerInput['identifier']>;
}

/**
 * What a message Bundle says about itself (FHIR R4 messaging): its own
 * identity, who sent it and who it is for. Read from a Bundle that passed
 * checkBundle; nothing here changes the bytes, which are signed verbatim.
 */
type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const text = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

/** The identifier system under which a partner's id is its identifier value (also used by partnerFhir). */
export const PARTNER_ID_SYSTEM = 'urn:fhir-gateway:partner';

/** A FHIR Identifier as far as matching goes: a value, and its system when one was given. */
export interface OrgIdentifier {
  system?: string;
  value: string;
}

/** An organisation as the gateway knows it: its id, and the identifier registered for it, if any. */
export interface KnownOrganisation {
  id: string;
  identifier?: { system: string; value: string } | undefined;
}

function identifierOf(v: unknown): OrgIdentifier | undefined {
  if (!isObject(v)) return undefined;
  const value = text(v.value);
  if (!value) return undefined;
  const system = text(v.system);
  return system ? { system, value } : { value };
}

/**
 * Whether an identifier names this organisation: by its registered system
 * and value, or by its id (value only, kept for existing clients, or under
 * PARTNER_ID_SYSTEM). An identifier under any other system names someone else.
 */
export function identifierNames(id: OrgIdentifier, org: KnownOrganisation): boolean {
  if (id.system === undefined || id.system === PARTNER_ID_SYSTEM) return id.value === org.id;
  return org.identifier !== undefined && id.system === org.identifier.system && id.value === org.identifier.value;
}

export const formatIdentifier = (id: OrgIdentifier): string =>
  id.system === undefined ? id.value : `${id.system}|${id.value}`;

function header(bundle: Json): Json | undefined {
  const entries = bundle.entry;
  const first = Array.isArray(entries) ? (entries[0] as unknown) : undefined;
  const resource = isObject(first) ? first.resource : undefined;
  return isObject(resource) && resource.resourceType === 'MessageHeader' ? resource : undefined;
}

/**
 * The message's identity, per client: Bundle.identifier (system and value)
 * if it has one, else MessageHeader.id. Undefined for a message with neither.
 */
export function messageKey(bundle: Json): { key: string; expression: string } | undefined {
  const id = identifierOf(bundle.identifier);
  if (id) return { key: `identifier ${formatIdentifier(id)}`, expression: 'Bundle.identifier' };
  const headerId = text(header(bundle)?.id);
  return headerId ? { key: `header ${headerId}`, expression: 'Bundle.entry[0].resource.id' } : undefined;
}

/** MessageHeader.sender.identifier and source.endpoint: what the message claims about its origin. */
export function messageOrigin(bundle: Json): { sender?: OrgIdentifier; sourceEndpoint?: string } {
  const h = header(bundle);
  if (!h) return {};
  const sender = isObject(h.sender) ? identifierOf(h.sender.identifier) : undefined;
  const sourceEndpoint = isObject(h.source) ? text(h.source.endpoint) : undefined;
  return { ...(sender ? { sender } : {}), ...(sourceEndpoint ? { sourceEndpoint } : {}) };
}

/** MessageHeader.reason's codings, each with its index: why the message was sent, as the message says. */
export function messageReasonCodings(bundle: Json): Array<{ index: number; system?: string; code?: string }> {
  const reason = header(bundle)?.reason;
  const codings = isObject(reason) && Array.isArray(reason.coding) ? (reason.coding as unknown[]) : [];
  return codings.map((c, index) => {
    const system = isObject(c) ? text(c.system) : undefined;
    const code = isObject(c) ? text(c.code) : undefined;
    return { index, ...(system ? { system } : {}), ...(code ? { code } : {}) };
  });
}

/** Per destination: receiver.identifier (system and value) and the endpoint. */
export function messageReceivers(bundle: Json): Array<{ index: number; receiver?: OrgIdentifier; endpoint?: string }> {
  const dest = header(bundle)?.destination;
  if (!Array.isArray(dest)) return [];
  return dest.map((d: unknown, index) => {
    const receiver = isObject(d) && isObject(d.receiver) ? identifierOf(d.receiver.identifier) : undefined;
    const endpoint = isObject(d) ? text(d.endpoint) : undefined;
    return { index, ...(receiver ? { receiver } : {}), ...(endpoint ? { endpoint } : {}) };
  });
}

/** MessageHeader.id: the id a response to this message names. */
export const messageHeaderId = (bundle: Json): string | undefined => text(header(bundle)?.id);

export type ResponseCode = 'ok' | 'transient-error' | 'fatal-error';
const RESPONSE_CODES: readonly string[] = ['ok', 'transient-error', 'fatal-error'];

/**
 * MessageHeader.response: this message answers the one whose MessageHeader.id
 * is `identifier`, with `code` (R4 requires both; checkBundle has validated them).
 */
export function messageResponse(bundle: Json): { identifier: string; code: ResponseCode } | undefined {
  const r = header(bundle)?.response;
  if (!isObject(r)) return undefined;
  const identifier = text(r.identifier);
  const code = text(r.code);
  return identifier && code && RESPONSE_CODES.includes(code) ? { identifier, code: code as ResponseCode } : undefined;
}

/** Where a refusal about a response points. */
export const RESPONSE_IDENTIFIER_EXPRESSION = 'Bundle.entry[0].resource.response.identifier';

/**
 * The shared shape of the gateway's FHIR views: a searchset Bundle with no
 * empty arrays (an empty search has no entry), and the FHIR media type.
 */
export const FHIR_JSON = 'application/fhir+json';

/** Where the EHR reads a received message's content (its verbatim Bundle): the target of the views that name one. */
export const inboxMessagePath = (id: string) => `/inbox/messages/${id}`;

export interface SearchPage<R> {
  /** The absolute URL of this search, as the client asked it. */
  self: string;
  resources: R[];
  /** The absolute URL of the next page, when there is one. */
  next?: string | undefined;
  /** The absolute URL each resource is read at. */
  fullUrl: (r: R) => string;
}

export function searchset<R extends object>(page: SearchPage<R>) {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    link: [{ relation: 'self', url: page.self }, ...(page.next ? [{ relation: 'next', url: page.next }] : [])],
    ...(page.resources.length
      ? { entry: page.resources.map((r) => ({ fullUrl: page.fullUrl(r), resource: r, search: { mode: 'match' } })) }
      : {}),
  };
}

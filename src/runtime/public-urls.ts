/** The addresses a person opens on a gateway: its API, FHIR base, interactive reference and the audit page. */
export interface PublicUrls {
  api: string;
  fhir: string;
  docs: string;
  audit: string;
}

export function publicUrls(baseUrl: string): PublicUrls {
  return { api: baseUrl, fhir: `${baseUrl}/fhir`, docs: `${baseUrl}/docs`, audit: `${baseUrl}/audit/ui` };
}

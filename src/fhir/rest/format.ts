import { GatewayError } from '../../errors.ts';

/**
 * What the FHIR routes speak: R4 JSON only. A request that asks for anything
 * else (XML, Turtle, another FHIR version) is told so with 406 (the answer it
 * wants) or 415 (the body it sent), never answered with JSON it did not ask for.
 */
export const FHIR_VERSIONS = new Set(['4.0', '4.0.1']);

/** `_format` values that mean FHIR JSON (the spec's short form and the MIME types). */
const JSON_FORMATS = new Set(['json', 'application/json', 'application/fhir+json']);
const JSON_TYPES = new Set(['application/fhir+json', 'application/json']);

interface MediaRange {
  type: string;
  params: Map<string, string>;
}

function parseMediaRange(text: string): MediaRange {
  const [type = '', ...rest] = text.split(';').map((s) => s.trim());
  const params = new Map<string, string>();
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq > 0)
      params.set(
        p.slice(0, eq).trim().toLowerCase(),
        p
          .slice(eq + 1)
          .trim()
          .replace(/^"(.*)"$/, '$1'),
      );
  }
  return { type: type.toLowerCase(), params };
}

function versionServed(r: MediaRange): boolean {
  const version = r.params.get('fhirversion');
  return version === undefined || FHIR_VERSIONS.has(version);
}

/** A media range of Accept that FHIR R4 JSON satisfies. */
function acceptsJson(r: MediaRange): boolean {
  if (r.params.get('q') !== undefined && Number(r.params.get('q')) <= 0) return false;
  const typeOk = JSON_TYPES.has(r.type) || r.type === '*/*' || r.type === 'application/*';
  return typeOk && versionServed(r);
}

/** 406 unless the `_format` parameter and the Accept header both allow FHIR R4 JSON. */
export function checkAcceptable(accept: string | undefined, format: string | undefined): void {
  if (format !== undefined) {
    const r = parseMediaRange(format);
    if (!JSON_FORMATS.has(r.type) || !versionServed(r))
      throw new GatewayError('NOT_ACCEPTABLE', '_format must be json (application/fhir+json, FHIR 4.0)', {
        expression: '_format',
      });
    // An explicit _format overrides Accept (FHIR: for clients that cannot set headers).
    return;
  }
  if (accept === undefined || accept.trim() === '') return;
  if (!accept.split(',').some((range) => acceptsJson(parseMediaRange(range))))
    throw new GatewayError('NOT_ACCEPTABLE', 'this server answers application/fhir+json (FHIR 4.0) only');
}

/** 415 for a body whose declared FHIR version is not the one served (the media type itself is the parser's business). */
export function checkContentVersion(contentType: string | undefined): void {
  if (contentType === undefined) return;
  if (!versionServed(parseMediaRange(contentType)))
    throw new GatewayError('UNSUPPORTED_MEDIA_TYPE', 'the body must be FHIR 4.0 (fhirVersion=4.0)');
}

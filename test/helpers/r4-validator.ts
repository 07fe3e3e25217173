import { r4Issues } from '../../src/fhir/r4-validate.ts';

/**
 * The R4 validator's error-level issues for a resource, one line each
 * (`type expression: diagnostics`); empty when it is valid R4. The same
 * validator intake uses (src/fhir/r4-validate.ts), loaded once per process.
 */
export function r4Errors(resource: unknown): string[] {
  if (typeof resource !== 'object' || resource === null || Array.isArray(resource))
    return ['structure: not a FHIR resource (a JSON object)'];
  return r4Issues(resource as Record<string, unknown>).map(
    (i) => `${i.type} ${i.expression?.join(', ') ?? ''}: ${i.diagnostics}`,
  );
}

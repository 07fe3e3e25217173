import type { CapabilityStatement, CapabilityStatementRestResource } from 'fhir/r4.js';

/**
 * The CapabilityStatement, built from tables: a resource, an interaction, a
 * search parameter or an operation the gateway serves is one line here, and
 * test/integration/fhir-rest.int.test.ts holds the tables to the routes.
 */
export type Interaction = 'read' | 'search-type' | 'create' | 'update' | 'delete';

export interface ResourceCapability {
  type: CapabilityStatementRestResource['type'];
  interactions: Interaction[];
  searchParams?: ReadonlyArray<{
    name: string;
    type: 'date' | 'token' | 'string' | 'reference';
    documentation: string;
  }>;
  /** Profiles (canonical URLs) its instances may claim in meta.profile. */
  supportedProfile?: readonly string[];
  /** Operations on its instances (`/fhir/{type}/{id}/${name}`). */
  operations?: readonly OperationCapability[];
  documentation?: string;
}

export interface OperationCapability {
  name: string;
  definition: string;
}

type Rest = CapabilityStatement['rest'] extends Array<infer R> | undefined ? R : never;

export interface CapabilityTables {
  baseUrl: string;
  version: string;
  resources: ResourceCapability[];
  operations: OperationCapability[];
  security?: Rest['security'];
}

function resourceEntry(r: ResourceCapability): CapabilityStatementRestResource {
  return {
    type: r.type,
    ...(r.supportedProfile?.length ? { supportedProfile: [...r.supportedProfile] } : {}),
    ...(r.documentation ? { documentation: r.documentation } : {}),
    interaction: r.interactions.map((code) => ({ code })),
    ...(r.searchParams?.length
      ? { searchParam: r.searchParams.map((p) => ({ name: p.name, type: p.type, documentation: p.documentation })) }
      : {}),
    ...(r.operations?.length
      ? { operation: r.operations.map((o) => ({ name: o.name, definition: o.definition })) }
      : {}),
  };
}

export function buildCapabilityStatement(t: CapabilityTables): CapabilityStatement {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2026-12-02',
    kind: 'instance',
    software: { name: 'FHIR secure exchange gateway', version: t.version },
    implementation: { description: 'Signed, end-to-end encrypted FHIR exchange gateway', url: `${t.baseUrl}/fhir` },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        ...(t.security ? { security: t.security } : {}),
        resource: t.resources.map(resourceEntry),
        operation: t.operations.map((o) => ({ name: o.name, definition: o.definition })),
      },
    ],
    messaging: [{ documentation: 'Messages are signed (JWS) and sealed per recipient (JWE); see docs/PROTOCOL.md' }],
  };
}

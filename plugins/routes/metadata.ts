import type { FastifyPluginAsync } from 'fastify';
import type { CapabilityStatement } from 'fhir/r4.js';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { TOKEN_PATH } from '../../src/auth/token-endpoint.ts';
import { PUBLIC } from '../route-policy.ts';

const VERSION = '0.1.0';

export function capabilityStatement(baseUrl: string): CapabilityStatement {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2026-11-22',
    kind: 'instance',
    software: { name: 'FHIR secure exchange gateway', version: VERSION },
    implementation: { description: 'Signed, end-to-end encrypted FHIR exchange gateway', url: `${baseUrl}/fhir` },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json'],
    rest: [
      {
        mode: 'server',
        security: {
          // SMART's oauth-uris extension: where a backend client gets its token (discovery has the rest).
          extension: [
            {
              url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
              extension: [{ url: 'token', valueUri: baseUrl + TOKEN_PATH }],
            },
          ],
          service: [
            {
              coding: [
                { system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' },
              ],
            },
          ],
          description: 'SMART Backend Services (client_credentials with private_key_jwt)',
        },
        resource: [{ type: 'AuditEvent', interaction: [{ code: 'search-type' }] }],
        operation: [
          {
            name: 'process-message',
            definition: 'http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message',
          },
        ],
      },
    ],
    messaging: [{ documentation: 'Messages are signed (JWS) and sealed per recipient (JWE); see docs/PROTOCOL.md' }],
  };
}

export function metadataRoutes(ctx: Pick<GatewayContext, 'config'>): FastifyPluginAsync {
  return async (app) => {
    const statement = capabilityStatement(ctx.config.baseUrl);
    app.get('/fhir/metadata', PUBLIC, async (_req, reply) => reply.type('application/fhir+json').send(statement));
  };
}

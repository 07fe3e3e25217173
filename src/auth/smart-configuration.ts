import { ASSERTION_ALGS } from './assertion.ts';
import { SCOPES_SUPPORTED } from './scopes.ts';

/** The FHIR base path: SMART discovery SHALL answer at `{fhir base}/.well-known/smart-configuration`. */
export const FHIR_BASE_PATH = '/fhir';
export const SMART_CONFIGURATION_PATH = '/.well-known/smart-configuration';

export interface SmartConfiguration {
  token_endpoint: string;
  token_endpoint_auth_methods_supported: string[];
  token_endpoint_auth_signing_alg_values_supported: string[];
  grant_types_supported: string[];
  scopes_supported: string[];
  capabilities: string[];
}

/**
 * SMART App Launch 2.x discovery for Backend Services only. No issuer and no
 * jwks_uri: the gateway is no OpenID Connect provider and its access tokens are
 * opaque, so a client has nothing of ours to verify. No authorization endpoint,
 * response types or PKCE methods: no browser flow exists to advertise.
 */
export function smartConfiguration(tokenEndpoint: string): SmartConfiguration {
  return {
    token_endpoint: tokenEndpoint,
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGS],
    grant_types_supported: ['client_credentials'],
    scopes_supported: [...SCOPES_SUPPORTED],
    capabilities: ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'],
  };
}

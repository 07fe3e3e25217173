import type { FastifyInstance } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { installDefaultDeny } from '../default-deny.ts';
import { installRefusalAudit } from '../refusal-audit.ts';
import { installRequestValueCheck } from '../request-values.ts';
import { installFhirRest } from '../fhir-rest.ts';
import { authRoutes } from './auth.ts';
import { adminClientRoutes } from './admin-clients.ts';
import { healthRoutes } from './health.ts';
import { inboxRoutes } from './inbox.ts';
import { evidenceRoutes } from './evidence.ts';
import { processedRoutes } from './processed.ts';
import { jwksRoutes } from './jwks.ts';
import { metadataRoutes } from './metadata.ts';
import { partnerRoutes } from './partners.ts';
import { exchangeRoutes } from './exchanges.ts';
import { deliveryRoutes } from './deliveries.ts';
import { adminKeyRoutes } from './admin-keys.ts';
import { auditRoutes } from './audit.ts';
import { auditUiRoutes } from './audit-ui.ts';
import { sharedPageAssets } from './page-assets.ts';
import { consoleRoutes } from './console.ts';
import { ssoRoutes } from './sso.ts';
import { mfaRoutes } from './mfa.ts';
import { backchannelLogoutRoutes } from './sso-backchannel.ts';
import { connectSso } from '../../src/auth/sso.ts';
import { imagingRoutes } from './imaging.ts';
import { fhirViewRoutes } from './fhir-views.ts';
import { subscriptionRoutes } from './subscriptions.ts';
import { installMetrics } from './metrics.ts';

/** Every HTTP route of the gateway, in one list. */
export async function registerRoutes(app: FastifyInstance, ctx: GatewayContext): Promise<void> {
  // First: every route below that is neither public nor guarded by requireScope() becomes admin-only.
  app.decorate('openRoutes', installDefaultDeny(app, ctx));
  // Every route that declares `refusalAudit` has its refusals audited by this one hook.
  installRefusalAudit(app, ctx);
  // Every path parameter and query value is plain text before a handler sees it.
  installRequestValueCheck(app);
  // Every route declared FHIR_REST: R4 JSON only, and 405 for its path's other methods.
  app.decorate('fhirRoutes', installFhirRest(app));
  // The metrics registry and its request hook (on the root, so it sees every route), and GET /metrics.
  installMetrics(app, ctx);
  await app.register(authRoutes(ctx));
  await app.register(adminClientRoutes(ctx));
  await app.register(healthRoutes(ctx));
  await app.register(metadataRoutes(ctx));
  await app.register(jwksRoutes(ctx));
  await app.register(partnerRoutes(ctx));
  await app.register(exchangeRoutes(ctx));
  await app.register(deliveryRoutes(ctx));
  await app.register(adminKeyRoutes(ctx));
  await app.register(inboxRoutes(ctx));
  await app.register(processedRoutes(ctx));
  await app.register(imagingRoutes(ctx));
  await app.register(evidenceRoutes(ctx));
  await app.register(fhirViewRoutes(ctx));
  await app.register(subscriptionRoutes(ctx));
  await app.register(auditRoutes(ctx));
  await app.register(async (shared) => sharedPageAssets(shared));
  await app.register(auditUiRoutes(ctx));
  await app.register(consoleRoutes(ctx));
  await app.register(mfaRoutes(ctx));
  if (ctx.config.oidcIssuer) {
    // One discovered issuer for the sign-in routes and the issuer's back-channel logout.
    const sso = connectSso(ctx.config, ctx.logger);
    await app.register(ssoRoutes(ctx, sso));
    await app.register(backchannelLogoutRoutes(ctx, sso));
  }
}

import type { FastifyPluginAsync } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { PUBLIC } from '../route-policy.ts';

/**
 * The public keys peers need: signing keys (use sig, ES256) and encryption
 * keys (use enc, alg ECDH-ES), then the post-quantum AKP keys unless
 * PROTOCOL_V2=off (their presence is what asks peers for v2). Cached for JWKS_MAX_AGE (default 5 minutes): new keys are published
 * well before they are used (KEY_PREPUBLISH), so peers always see them in time.
 */
export function jwksRoutes(ctx: Pick<GatewayContext, 'keyring' | 'config'>): FastifyPluginAsync {
  return async (app) => {
    app.get('/.well-known/jwks.json', PUBLIC, async (_req, reply) => {
      const keyring = await ctx.keyring.fresh(10_000);
      return (
        reply
          // JWKS_MAX_AGE: KEY_PREPUBLISH exceeds it, so any cached copy already holds the next key.
          .header('Cache-Control', `public, max-age=${Math.floor(ctx.config.jwksMaxAge / 1000)}, stale-if-error=86400`)
          .type('application/jwk-set+json')
          .send(keyring.jwks({ pq: ctx.config.protocolV2 === 'on' }))
      );
    });
  };
}

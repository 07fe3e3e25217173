import type { FastifyInstance } from 'fastify';
import type { GatewayContext } from '../context.ts';
import { healthRoutes } from './health.ts';
import { jwksRoutes } from './jwks.ts';
import { metadataRoutes } from './metadata.ts';

/** Every HTTP route of the gateway, in one list. */
export async function registerRoutes(app: FastifyInstance, ctx: GatewayContext): Promise<void> {
  await app.register(healthRoutes(ctx));
  await app.register(metadataRoutes(ctx));
  await app.register(jwksRoutes(ctx));
}

import type { FastifyPluginAsync } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { operationOutcome } from '../../src/fhir/outcome.ts';
import { r4DefinitionsLoaded } from '../../src/fhir/r4-definitions.ts';
import { PUBLIC } from '../route-policy.ts';

type Check = 'database' | 'hsm' | 'queue' | 'validator';

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
    }),
  ]);
}

/** Each dependency answers, or its check fails with a reason. */
export async function readiness(
  ctx: Pick<GatewayContext, 'pool' | 'hsm'>,
  timeoutMs = 2_000,
): Promise<Record<Check, string>> {
  const checks: Record<Check, () => Promise<unknown>> = {
    database: () => ctx.pool.query('SELECT 1'),
    hsm: () => ctx.hsm.ping(),
    queue: async () => {
      const { rows } = await ctx.pool.query<{ ok: string | null }>(
        `SELECT to_regclass('graphile_worker._private_jobs')::text AS ok`,
      );
      if (!rows[0]?.ok) throw new Error('graphile-worker schema missing');
    },
    // Ready means a Bundle is validated at once, not after loading the R4 definitions.
    validator: async () => {
      if (!r4DefinitionsLoaded()) throw new Error('the R4 definitions are still loading');
    },
  };
  const entries = await Promise.all(
    (Object.keys(checks) as Check[]).map(async (name) => {
      try {
        await withTimeout(checks[name](), timeoutMs, name);
        return [name, 'ok'] as const;
      } catch (err) {
        return [name, (err as Error).message || 'failed'] as const;
      }
    }),
  );
  return Object.fromEntries(entries) as Record<Check, string>;
}

export function healthRoutes(ctx: Pick<GatewayContext, 'pool' | 'hsm'>): FastifyPluginAsync {
  return async (app) => {
    app.get('/health', PUBLIC, async () => ({ status: 'ok' }));
    app.get('/ready', PUBLIC, async (_req, reply) => {
      const checks = await readiness(ctx);
      const failed = Object.entries(checks).filter(([, v]) => v !== 'ok');
      if (failed.length === 0) return { status: 'ready', checks };
      return reply
        .code(503)
        .header('Retry-After', '5')
        .type('application/fhir+json')
        .send(
          operationOutcome(
            ...failed.map(([name, why]) => ({
              code: 'transient' as const,
              errorCode: 'UNAVAILABLE',
              diagnostics: `${name}: ${why}`,
            })),
          ),
        );
    });
  };
}

import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { appendAudit } from '../../src/audit/append.ts';
import { inTransaction } from '../../src/db/pool.ts';
import { GatewayError } from '../../src/errors.ts';
import { required } from '../../src/required.ts';
import {
  getClient,
  listClients,
  registerClient,
  setClientEnabled,
  updateClientSettings,
  clientSettingsDetail,
  type ClientRecord,
} from '../../src/auth/clients.ts';
import { requireScope, SCOPE_ADMIN } from '../guard.ts';
import { bindPartnerCertificate, listTlsBindings, unbindCertificate } from '../../src/auth/tls-bindings.ts';

const view = (c: ClientRecord) => ({
  id: c.id,
  name: c.name,
  scopes: c.scopes,
  enabled: c.enabled,
  jwks_uri: c.jwksUri ?? undefined,
  jwks: c.jwks ?? undefined,
  rate_limit: c.rateLimit,
  receives_from: c.receivesFrom,
  purpose_of_use: c.purposeOfUse,
  created_at: c.createdAt.toISOString(),
  disabled_at: c.disabledAt?.toISOString(),
});

interface ClientBody {
  id?: unknown;
  name?: unknown;
  jwks?: unknown;
  jwks_uri?: unknown;
  scope?: unknown;
  scopes?: unknown;
  rate_limit?: unknown;
  receives_from?: unknown;
  purpose_of_use?: unknown;
}

/** Client registry and mutual-TLS bindings, for holders of the admin scope. */
export function adminClientRoutes(ctx: GatewayContext): FastifyPluginAsync {
  return async (app) => {
    const admin = requireScope(ctx, SCOPE_ADMIN);
    const who = (request: FastifyRequest) => ({
      type: 'admin' as const,
      id: request.principal?.clientId ?? 'unknown',
      network: request.ip,
    });

    app.get('/admin/clients', { preHandler: admin }, async () => ({
      clients: (await listClients(ctx.pool)).map(view),
    }));

    app.get<{ Params: { id: string } }>('/admin/clients/:id', { preHandler: admin }, async (request) => {
      const c = await getClient(ctx.pool, request.params.id);
      if (!c) throw new GatewayError('NOT_FOUND', `no client ${request.params.id}`);
      return view(c);
    });

    app.post<{ Body: ClientBody }>('/admin/clients', { preHandler: admin }, async (request, reply) => {
      const b = (request.body ?? {}) as ClientBody;
      const scopes = Array.isArray(b.scopes)
        ? b.scopes
        : typeof b.scope === 'string'
          ? b.scope.split(/\s+/).filter(Boolean)
          : [];
      const created = await inTransaction(ctx.pool, async (db) => {
        const c = await registerClient(db, {
          id: b.id as string,
          name: typeof b.name === 'string' ? b.name : undefined,
          scopes: scopes as string[],
          jwks: b.jwks,
          jwksUri: typeof b.jwks_uri === 'string' ? b.jwks_uri : undefined,
          rateLimit: typeof b.rate_limit === 'number' ? b.rate_limit : undefined,
          receivesFrom: b.receives_from as string[] | undefined,
          purposeOfUse: b.purpose_of_use,
        });
        await appendAudit(db, [
          {
            type: 'client.registered',
            outcome: 'success',
            agent: who(request),
            entity: [{ type: 'client', id: c.id }],
            detail: { scope: c.scopes.join(' '), ...clientSettingsDetail(c) },
          },
        ]);
        return c;
      });
      return reply
        .code(201)
        .header('Location', `/admin/clients/${encodeURIComponent(created.id)}`)
        .send(view(created));
    });

    // Settings: replace the inbox routing ([] = none, ['*'] = all) and/or the default purpose of use ([] = none).
    app.patch<{ Params: { id: string }; Body: { receives_from?: unknown; purpose_of_use?: unknown } }>(
      '/admin/clients/:id',
      { preHandler: admin },
      async (request) => {
        const id = request.params.id;
        const b = (request.body ?? {}) as { receives_from?: unknown; purpose_of_use?: unknown };
        const extra = Object.keys(b).filter((k) => k !== 'receives_from' && k !== 'purpose_of_use');
        if ((b.receives_from === undefined && b.purpose_of_use === undefined) || extra.length)
          throw new GatewayError(
            'INVALID_VALUE',
            'PATCH takes {"receives_from": [partner ids or "*"], "purpose_of_use": [PurposeOfUse codes]}, either or both',
            { expression: extra[0] ?? 'receives_from' },
          );
        return view(
          await inTransaction(ctx.pool, async (db) => {
            const c = await updateClientSettings(db, id, {
              receivesFrom: b.receives_from,
              purposeOfUse: b.purpose_of_use,
            });
            if (!c) throw new GatewayError('NOT_FOUND', `no client ${id}`);
            await appendAudit(db, [
              {
                type: 'client.updated',
                outcome: 'success',
                agent: who(request),
                entity: [{ type: 'client', id }],
                detail: clientSettingsDetail(c),
              },
            ]);
            return c;
          }),
        );
      },
    );

    for (const [verb, enabled] of [
      ['disable', false],
      ['enable', true],
    ] as const) {
      app.post<{ Params: { id: string } }>(`/admin/clients/:id/${verb}`, { preHandler: admin }, async (request) => {
        const id = request.params.id;
        await inTransaction(ctx.pool, async (db) => {
          if (!(await setClientEnabled(db, id, enabled))) throw new GatewayError('NOT_FOUND', `no client ${id}`);
          await appendAudit(db, [
            {
              type: `client.${verb}d`,
              outcome: 'success',
              agent: who(request),
              entity: [{ type: 'client', id }],
            },
          ]);
        });
        return view(required(await getClient(ctx.pool, id), 'the client just updated in the same request'));
      });
    }

    app.get('/admin/tls-bindings', { preHandler: admin }, async () => ({ bindings: await listTlsBindings(ctx.pool) }));

    app.post<{ Body: { partner_id?: unknown; cert_pem?: unknown; cert_sha256?: unknown } }>(
      '/admin/tls-bindings',
      { preHandler: admin },
      async (request, reply) => {
        const b = request.body ?? {};
        const binding = await inTransaction(ctx.pool, async (db) => {
          const out = await bindPartnerCertificate(db, {
            partnerId: b.partner_id,
            certPem: b.cert_pem,
            certSha256: b.cert_sha256,
          });
          await appendAudit(db, [
            {
              type: 'tls.bound',
              outcome: 'success',
              agent: who(request),
              entity: [{ type: 'partner', id: out.partnerId, digest: out.certSha256 }],
            },
          ]);
          return out;
        });
        return reply.code(201).send(binding);
      },
    );

    app.delete<{ Params: { sha256: string } }>(
      '/admin/tls-bindings/:sha256',
      { preHandler: admin },
      async (request, reply) => {
        await inTransaction(ctx.pool, async (db) => {
          const partnerId = await unbindCertificate(db, request.params.sha256);
          if (!partnerId) throw new GatewayError('NOT_FOUND', 'no such binding');
          await appendAudit(db, [
            {
              type: 'tls.unbound',
              outcome: 'success',
              agent: who(request),
              entity: [{ type: 'partner', id: partnerId, digest: request.params.sha256 }],
            },
          ]);
        });
        return reply.code(204).send();
      },
    );
  };
}

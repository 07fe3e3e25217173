import type { ErrorCode } from '../src/errors.ts';

/** Route options of a route anyone may call. */
export const PUBLIC = { config: { public: true } } as const;

/** Route config of a FHIR REST route: R4 JSON only (406/415), 405 for its path's other methods (plugins/fhir-rest.ts). */
export const FHIR_REST = { fhir: true } as const;

/** The audit event a route writes when it refuses a request (a 4xx). */
export type RefusalAuditType =
  'inbox.refused' | 'intake.refused' | 'evidence.refused' | 'processed-receipt.refused' | 'subscription.refused';

/** The audit event of an invalid value on a route that declares no refusal audit of its own. */
export const INVALID_VALUE_AUDIT = 'request.refused';

/** What the error handler decided for a failed request, kept for the hooks that run after it. */
export interface ErrorDecision {
  code: ErrorCode;
  status: number;
  /** The pipeline that refused already wrote the refusal's audit entry. */
  audited: boolean;
  /** The parameter or element the refusal points at (the outcome's first expression). */
  expression?: string;
  /** A 503 that turned the request away for load before reading it: a refusal, audited like a 4xx. */
  shed: boolean;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Anyone may call it: no bearer token (discovery, health, the token endpoint itself). */
    public?: boolean;
    /**
     * A peer-gateway route: mutual TLS (when TLS_CLIENT_CA_FILE is set) and the
     * binding of the signed sender to the peer certificate's partner.
     */
    peer?: boolean;
    /** A FHIR REST route (FHIR_REST): the format, version and method conventions of plugins/fhir-rest.ts apply. */
    fhir?: boolean;
    /** Refusals on this route are audited with this event type. */
    refusalAudit?: RefusalAuditType;
    /** The route buffers its body whole before it authenticates the sender: held against INBOX_BUFFER_BUDGET (plugins/plugins/body-budget.ts). */
    bodyBudget?: boolean;
  }
  interface FastifyRequest {
    /** Set on peer routes under mutual TLS: the partner the peer certificate is bound to. */
    tlsPeer?: { partnerId: string; certSha256: string };
  }
  interface FastifyInstance {
    /** "METHOD /url" of every route declared public or peer: the routes a caller reaches without a bearer token. */
    openRoutes: ReadonlySet<string>;
  }
  interface FastifyReply {
    /** Set by the error handler (plugins/plugins/outcome.ts). */
    gatewayError: ErrorDecision | null;
  }
}

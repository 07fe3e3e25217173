import type { FastifyInstance, FastifyRequest, RouteOptions, preValidationAsyncHookHandler } from 'fastify';
import { checkAcceptable, checkContentVersion } from '../src/fhir/rest/format.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Every FHIR REST route (config.fhir), for the 405 answer and the CapabilityStatement check. */
    fhirRoutes: FhirRouteTable;
  }
}

const first = (v: unknown): string | undefined =>
  typeof v === 'string' ? v : Array.isArray(v) && typeof v[0] === 'string' ? v[0] : undefined;

/** 406/415 before the handler runs; after the route's own authentication (onRequest), so a 401 still comes first. */
const checkFormat: preValidationAsyncHookHandler = async (request: FastifyRequest) => {
  checkAcceptable(first(request.headers.accept), first((request.query as Record<string, unknown> | null)?._format));
  checkContentVersion(first(request.headers['content-type']));
};

/** A route path (`/fhir/AuditEvent/:id`) as a pattern over request paths. */
function pathPattern(url: string): RegExp {
  const escaped = url
    .split('/')
    .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${escaped}$`);
}

export class FhirRouteTable {
  readonly #byUrl = new Map<string, { pattern: RegExp; methods: Set<string> }>();

  add(url: string, methods: string[]): void {
    const known = this.#byUrl.get(url) ?? { pattern: pathPattern(url), methods: new Set<string>() };
    for (const m of methods) known.methods.add(m);
    this.#byUrl.set(url, known);
  }

  /** "METHOD /url" of every FHIR route. */
  routes(): Array<{ method: string; url: string }> {
    return [...this.#byUrl].flatMap(([url, { methods }]) => [...methods].map((method) => ({ method, url })));
  }

  /** The methods a FHIR path answers (for Allow), or undefined when no FHIR route has this path. */
  allowedMethods(rawPath: string): string[] | undefined {
    // The router matches decoded paths (%24process-message is $process-message); a path that does not decode names nothing.
    let path: string;
    try {
      path = decodeURIComponent(rawPath);
    } catch {
      return undefined;
    }
    const methods = new Set<string>();
    for (const { pattern, methods: m } of this.#byUrl.values())
      if (pattern.test(path)) m.forEach((x) => methods.add(x));
    return methods.size ? [...methods].sort() : undefined;
  }
}

/**
 * For every FHIR REST route registered after this call (route config
 * `fhir`): R4 JSON only (406/415), and its path in the table that turns a
 * request with another method into 405 with Allow instead of 404. The 405
 * names only what the public CapabilityStatement already declares, so it
 * tells an anonymous caller nothing a 404 hides; other paths keep their 404.
 */
export function installFhirRest(app: FastifyInstance): FhirRouteTable {
  const table = new FhirRouteTable();
  app.addHook('onRoute', (route: RouteOptions) => {
    if (!(route.config as { fhir?: boolean } | undefined)?.fhir) return;
    table.add(route.url, Array.isArray(route.method) ? route.method : [route.method]);
    const pre = route.preValidation;
    route.preValidation = [checkFormat, ...(Array.isArray(pre) ? pre : pre ? [pre] : [])];
  });
  return table;
}

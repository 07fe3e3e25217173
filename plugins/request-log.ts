import type { IncomingMessage } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { FastifyRequest } from 'fastify';

/** Headers that must never reach a log line. Bodies are never logged at all. */
const REDACT = ['req.headers.authorization', 'req.headers.cookie', 'req.headers["idempotency-key"]'];

/** Query parameters that carry a credential or a patient identifier: their values are cut from every logged URL. */
const SECRET_QUERY = new Set([
  'patient.identifier',
  'access_token',
  'refresh_token',
  'id_token',
  'code',
  'client_assertion',
  'client_secret',
  'password',
]);

/** A client's X-Request-Id is used only in this form; anything else gets a fresh id. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The request id for logs and error texts: the caller's X-Request-Id when it
 * is a short token of safe characters (so it cannot forge log lines or carry
 * a payload), else a random UUID.
 */
export function requestIdOf(req: Pick<IncomingMessage, 'headers'>): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
}

const decodedName = (raw: string): string => {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' ')).toLowerCase();
  } catch {
    return raw.toLowerCase();
  }
};

/** The URL with the value of each credential-carrying query parameter replaced (names compared decoded). */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const query = url
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq < 0 ? pair : pair.slice(0, eq);
      return SECRET_QUERY.has(decodedName(name)) ? `${name}=[REDACTED]` : pair;
    });
  return `${url.slice(0, q)}?${query.join('&')}`;
}

/** pino options of the gateway's logger: its level, the redactions, and a request line without credentials. */
export function logOptions(level: string, stream?: { write(line: string): void }) {
  return {
    level,
    redact: REDACT,
    serializers: {
      req: (req: FastifyRequest) => ({
        method: req.method,
        url: redactUrl(req.url),
        host: req.host,
        remoteAddress: req.ip,
        remotePort: req.socket?.remotePort,
      }),
    },
    ...(stream ? { stream } : {}),
  };
}

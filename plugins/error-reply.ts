import type { OperationOutcome } from 'fhir/r4.js';
import { HsmError } from '../hsm/errors.ts';
import { GatewayError, type ErrorCode } from '../src/errors.ts';
import { DATABASE_RETRY_AFTER_S, isDatabaseUnavailable } from '../src/db/unavailable.ts';
import { operationOutcome } from '../src/fhir/outcome.ts';

export interface ErrorReply {
  /** The machine code, so nothing downstream has to read it back out of the outcome. */
  code: ErrorCode;
  status: number;
  outcome: OperationOutcome;
  retryAfter?: number;
  /** 5xx are logged with their stack; 4xx are the client's business. */
  serverFault: boolean;
}

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_VALIDATION: 'BAD_REQUEST',
  FST_ERR_NOT_FOUND: 'NOT_FOUND',
};

/** A full disk, a full quota, or PostgreSQL's disk_full (SQLSTATE 53100): the operator must act, the sender may retry. */
const DISK_FULL = new Set(['ENOSPC', 'EDQUOT', '53100']);

/**
 * The one translation point from any thrown error to an HTTP status and a
 * FHIR OperationOutcome. Text of server faults never reaches the client.
 */
export function toErrorReply(err: unknown, requestId: string): ErrorReply {
  let ge: GatewayError | undefined;
  if (err instanceof GatewayError) ge = err;
  else if (err instanceof HsmError && err.transient)
    ge = new GatewayError('UNAVAILABLE', 'the HSM is unavailable; retry later', { retryAfter: 5 });
  else if (err instanceof HsmError && err.code === 'HSM_MECHANISM_UNSUPPORTED')
    // A deployment fault (logged at start), not the request's: the sender keeps its request and retries.
    ge = new GatewayError('UNAVAILABLE', 'the HSM does not offer a mechanism this operation needs; retry later', {
      retryAfter: 60,
      cause: err,
    });
  else if (isDatabaseUnavailable(err))
    ge = new GatewayError('UNAVAILABLE', 'the database is unavailable; retry later', {
      retryAfter: DATABASE_RETRY_AFTER_S,
      cause: err,
    });
  else if (err && typeof err === 'object') {
    const e = err as { code?: string; statusCode?: number; message?: string };
    const mapped = e.code ? FASTIFY_CODES[e.code] : undefined;
    if (mapped) ge = new GatewayError(mapped, e.message ?? mapped);
    else if (e.code && DISK_FULL.has(e.code))
      ge = new GatewayError(
        'INSUFFICIENT_STORAGE',
        'the gateway has no storage left for this request; nothing was kept; retry later',
        { retryAfter: 60, cause: err },
      );
    else if (err instanceof SyntaxError && e.statusCode === 400)
      ge = new GatewayError('INVALID_JSON', `malformed JSON: ${e.message}`);
    else if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
      ge = new GatewayError(
        e.statusCode === 413 ? 'PAYLOAD_TOO_LARGE' : e.statusCode === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : 'BAD_REQUEST',
        e.message ?? 'bad request',
      );
    }
  }
  if (ge) {
    const serverFault = ge.status >= 500;
    return {
      code: ge.code,
      status: ge.status,
      retryAfter: ge.retryAfter,
      serverFault,
      outcome: ge.issues
        ? operationOutcome(
            ...ge.issues.map((i) => ({
              code: i.type,
              errorCode: ge.code,
              diagnostics: i.diagnostics,
              expression: i.expression,
            })),
          )
        : operationOutcome({
            code: ge.issue,
            errorCode: ge.code,
            // Transient faults (503, 507) say what to do; other 5xx hide their text.
            diagnostics: serverFault && ge.issue !== 'transient' ? `internal error (request ${requestId})` : ge.message,
            expression: ge.expression,
          }),
    };
  }
  return {
    code: 'INTERNAL',
    status: 500,
    serverFault: true,
    outcome: operationOutcome({
      code: 'exception',
      errorCode: 'INTERNAL',
      diagnostics: `internal error (request ${requestId})`,
    }),
  };
}

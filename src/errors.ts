/**
 * Errors with stable codes. Routes and pipelines throw these; one handler
 * (plugins/plugins/outcome.ts) turns them into an HTTP status and a FHIR
 * OperationOutcome. Tests assert the code, not the message.
 */
export type IssueType =
  | 'invalid'
  | 'structure'
  | 'required'
  | 'value'
  | 'code-invalid'
  | 'invariant'
  | 'security'
  | 'login'
  | 'forbidden'
  | 'not-found'
  | 'not-supported'
  | 'duplicate'
  | 'conflict'
  | 'too-long'
  | 'too-costly'
  | 'throttled'
  | 'transient'
  | 'exception'
  | 'processing'
  | 'timeout'
  | 'lock-error';

interface CodeSpec {
  status: number;
  issue: IssueType;
}

export const ERROR_CODES = {
  BAD_REQUEST: { status: 400, issue: 'invalid' },
  INVALID_JSON: { status: 400, issue: 'structure' },
  /** Not a valid R4 Bundle the gateway exchanges: each issue carries its own type and element. */
  INVALID_FHIR: { status: 422, issue: 'invalid' },
  INVALID_VALUE: { status: 400, issue: 'value' },
  UNKNOWN_RECIPIENT: { status: 422, issue: 'not-found' },
  /** A response message names a message that was never exchanged with that partner (MessageHeader.response, response_to). */
  RESPONSE_UNMATCHED: { status: 422, issue: 'not-found' },
  /** MessageHeader.sender or source names another organisation than the one sending it. */
  MESSAGE_ORIGIN_MISMATCH: { status: 422, issue: 'invariant' },
  /** A stated purpose of use outside the HL7 PurposeOfUse value set (or two statements that disagree). */
  PURPOSE_OF_USE_INVALID: { status: 422, issue: 'code-invalid' },
  UNAUTHENTICATED: { status: 401, issue: 'login' },
  FORBIDDEN: { status: 403, issue: 'forbidden' },
  /** A password-only session of an account that must enrol a second factor (MFA_REQUIRED): enrolment only. */
  MFA_ENROLMENT_REQUIRED: { status: 403, issue: 'forbidden' },
  /** A password-only session of an account with a second factor: the second-factor step only. */
  SECOND_FACTOR_REQUIRED: { status: 403, issue: 'forbidden' },
  NOT_FOUND: { status: 404, issue: 'not-found' },
  /** The content existed and was purged by retention (RETENTION_*): its metadata, digests and receipt remain. */
  CONTENT_PURGED: { status: 410, issue: 'not-found' },
  METHOD_NOT_ALLOWED: { status: 405, issue: 'not-supported' },
  /** A FHIR route asked for a format or FHIR version it does not answer in (Accept, _format). */
  NOT_ACCEPTABLE: { status: 406, issue: 'not-supported' },
  /** The request body arrived too slowly (BODY_MIN_RATE): cut, the client may send it again. */
  REQUEST_TIMEOUT: { status: 408, issue: 'timeout' },
  CONFLICT: { status: 409, issue: 'conflict' },
  PAYLOAD_TOO_LARGE: { status: 413, issue: 'too-long' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, issue: 'not-supported' },
  UNPROCESSABLE: { status: 422, issue: 'processing' },
  RATE_LIMITED: { status: 429, issue: 'throttled' },
  INTERNAL: { status: 500, issue: 'exception' },
  UNAVAILABLE: { status: 503, issue: 'transient' },
  /** The disk (or the database's disk) is full: nothing was kept; the sender retries later. */
  INSUFFICIENT_STORAGE: { status: 507, issue: 'transient' },
  // Inbound exchange (POST /inbox) refusals: each a permanent 4xx for the sender.
  JWE_MALFORMED: { status: 400, issue: 'structure' },
  JWE_UNSUPPORTED_ALG: { status: 400, issue: 'not-supported' },
  JWE_ZIP_UNSUPPORTED: { status: 400, issue: 'not-supported' },
  JWE_UNKNOWN_KID: { status: 400, issue: 'security' },
  JWE_INVALID_EPK: { status: 400, issue: 'security' },
  JWE_DECRYPT_FAILED: { status: 400, issue: 'security' },
  JWS_MALFORMED: { status: 400, issue: 'structure' },
  JWS_SIGNATURE_INVALID: { status: 400, issue: 'security' },
  /** Signed with a key the partner no longer publishes: new content needs a key in its current JWKS. */
  JWS_KEY_WITHDRAWN: { status: 400, issue: 'security' },
  CLAIMS_INVALID: { status: 400, issue: 'invalid' },
  UNKNOWN_SENDER: { status: 403, issue: 'forbidden' },
  SENDER_MISMATCH: { status: 403, issue: 'forbidden' },
  WRONG_AUDIENCE: { status: 400, issue: 'security' },
  IAT_OUT_OF_WINDOW: { status: 400, issue: 'value' },
  REPLAY_CONFLICT: { status: 409, issue: 'conflict' },
  /** Protocol v2 (PROTOCOL §14): a hybrid envelope with a compact JWS, or a v1 envelope (or receipt) in the JSON form. */
  PROTOCOL_MIXED: { status: 400, issue: 'structure' },
  /** Protocol v1 where both sides publish post-quantum keys: refused, never silently accepted as weaker. */
  PROTOCOL_DOWNGRADE: { status: 400, issue: 'security' },
  // A partner's signed receipt: not a well-formed accepting receipt, or one for other bytes than were sent.
  RECEIPT_INVALID: { status: 400, issue: 'invalid' },
  RECEIPT_MISMATCH: { status: 400, issue: 'security' },
  // Imaging: refusals of a DICOM upload or of an imaging delivery.
  DICOM_INVALID: { status: 400, issue: 'structure' },
  DICOM_TRUNCATED: { status: 400, issue: 'structure' },
  CONTENT_DIGEST_MISMATCH: { status: 400, issue: 'security' },
  /** The delivered DICOM is not what the signed manifest's ImagingStudy describes. */
  IMAGING_STUDY_MISMATCH: { status: 422, issue: 'invariant' },
} as const satisfies Record<string, CodeSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** One problem with a request, as an OperationOutcome issue: its type, what is wrong, and where (FHIRPath). */
export interface Issue {
  type: IssueType;
  diagnostics: string;
  expression?: string[];
}

export class GatewayError extends Error {
  readonly code: ErrorCode;
  /** FHIRPath of the offending element(s), e.g. Bundle.entry[2].fullUrl */
  readonly expression: string[] | undefined;
  /** Seconds the client should wait before retrying (429, 503, 507). */
  readonly retryAfter: number | undefined;
  /** Several problems at once (a validation), each with its own type; the first is the error's own. */
  readonly issues: readonly Issue[] | undefined;
  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; expression?: string[] | string; retryAfter?: number; issues?: Issue[] },
  ) {
    super(message, { cause: options?.cause });
    this.name = 'GatewayError';
    this.code = code;
    const expr = options?.expression ?? options?.issues?.[0]?.expression;
    this.expression = expr === undefined ? undefined : Array.isArray(expr) ? expr : [expr];
    this.retryAfter = options?.retryAfter;
    this.issues = options?.issues?.length ? options.issues : undefined;
  }
  get status(): number {
    return ERROR_CODES[this.code].status;
  }
  get issue(): IssueType {
    return this.issues?.[0]?.type ?? ERROR_CODES[this.code].issue;
  }
}

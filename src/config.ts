import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { availableParallelism } from 'node:os';
import { EMBEDDED_PG_PROFILES } from './db/embedded-profile.ts';
import { parseMultiHostUrl, type MultiHostUrl } from './db/primary.ts';

/**
 * One schema for every environment variable the gateway reads. Each field
 * parses its raw string, and says what a good value looks like, so a wrong
 * value stops the process with a message that names the variable and the fix.
 * The Config type is derived from the schema.
 */
interface Field<T> {
  env: string;
  help: string;
  example: string;
  parse: (raw: string | undefined, env: NodeJS.ProcessEnv) => T;
}

class BadValue extends Error {}

const str = (env: string, help: string, example: string, fallback?: string): Field<string> => ({
  env,
  help,
  example,
  parse: (raw) => {
    if (raw !== undefined && raw !== '') return raw;
    if (fallback !== undefined) return fallback;
    throw new BadValue('is required');
  },
});

const optional = (env: string, help: string, example: string): Field<string | undefined> => ({
  env,
  help,
  example,
  parse: (raw) => (raw === undefined || raw === '' ? undefined : raw),
});

const int = (env: string, help: string, fallback: number, min: number, max: number): Field<number> => ({
  env,
  help,
  example: String(fallback),
  parse: (raw) => {
    if (raw === undefined || raw === '') return fallback;
    if (!/^\d+$/.test(raw.trim())) throw new BadValue(`must be a whole number from ${min} to ${max}`);
    const n = Number(raw);
    if (n < min || n > max) throw new BadValue(`must be a whole number from ${min} to ${max}`);
    return n;
  },
});

const optionalInt = (
  env: string,
  help: string,
  example: string,
  min: number,
  max: number,
): Field<number | undefined> => ({
  env,
  help,
  example,
  parse: (raw, all) => (raw === undefined || raw === '' ? undefined : int(env, help, 0, min, max).parse(raw, all)),
});

const oneOf = <T extends string>(env: string, help: string, values: readonly T[], fallback: T): Field<T> => ({
  env,
  help,
  example: fallback,
  parse: (raw) => {
    if (raw === undefined || raw === '') return fallback;
    if (!(values as readonly string[]).includes(raw)) throw new BadValue(`must be one of ${values.join(', ')}`);
    return raw as T;
  },
});

const url = (env: string, help: string, example: string, protocols: string[]): Field<string | undefined> => ({
  env,
  help,
  example,
  parse: (raw) => {
    if (raw === undefined || raw === '') return undefined;
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new BadValue('is not a valid URL');
    }
    if (!protocols.includes(u.protocol)) throw new BadValue(`must be a ${protocols.join(' or ')} URL`);
    return raw.replace(/\/+$/, '');
  },
});

/** A PostgreSQL URL, or a multi-host one whose every host spelt alone is one. */
const databaseUrl = (single: Field<string | undefined>): Field<string | undefined> => ({
  ...single,
  parse: (raw, env) => {
    let multi: MultiHostUrl | undefined;
    try {
      multi = raw ? parseMultiHostUrl(raw) : undefined;
    } catch (err) {
      throw new BadValue((err as Error).message.replace(/^DATABASE_URL: /, ''));
    }
    if (!multi) return single.parse(raw, env);
    for (const h of multi.hosts) single.parse(multi.urlFor(h), env);
    return raw;
  },
});

/** Durations: "90d", "12h", "30m", "45s", "250ms" or plain milliseconds. */
const duration = (env: string, help: string, fallback: string): Field<number> => ({
  env,
  help,
  example: fallback,
  parse: (raw) => {
    const m = /^(\d+)(ms|s|m|h|d)?$/.exec((raw === undefined || raw === '' ? fallback : raw).trim());
    if (!m) throw new BadValue('must be a duration such as 500ms, 30s, 15m, 12h or 90d');
    const unit = { ms: 1, s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[(m[2] ?? 'ms') as 'ms'];
    return Number(m[1]) * unit;
  },
});

const DEFAULT_HOST = '127.0.0.1';

export const schema = {
  port: int('PORT', 'TCP port of the HTTP(S) listener', 8080, 0, 65535),
  host: str('HOST', 'Address to listen on; the embedded default is loopback only', DEFAULT_HOST, DEFAULT_HOST),
  publicUrl: url(
    'PUBLIC_URL',
    'Base URL peers use to reach this gateway (inbox = PUBLIC_URL/inbox)',
    'https://gw.example-hospital.org',
    ['http:', 'https:'],
  ),
  orgId: optional(
    'ORG_ID',
    "This organisation's id in partners' directories (default: PUBLIC_URL)",
    'https://gw.example-hospital.org',
  ),
  orgIdentifier: {
    env: 'ORG_IDENTIFIER',
    help: "This organisation's identifier as its EHRs write MessageHeader.sender.identifier, as system|value (partners register the same); unset = only ORG_ID (no system) names it",
    example: 'http://hl7.org/fhir/sid/us-npi|1234567893',
    parse: (raw: string | undefined): string | undefined => {
      if (raw === undefined || raw === '') return undefined;
      if (!/^[a-z][a-z0-9+.-]*:[\x21-\x7b\x7d\x7e]*\|[\x21-\x7b\x7d\x7e]+$/i.test(raw))
        throw new BadValue('must be system|value: a URI, a bar, a value (no spaces)');
      return raw;
    },
  },
  databaseUrl: databaseUrl(
    url(
      'DATABASE_URL',
      'PostgreSQL connection URL; several hosts (`a:5432,b:5432`, target_session_attrs=read-write) = the primary among them (docs/production.md); unset = embedded PostgreSQL in DATA_DIR/pg',
      'postgres://gateway:secret@db:5432/gateway',
      ['postgres:', 'postgresql:'],
    ),
  ),
  dataDir: str(
    'DATA_DIR',
    'Directory for embedded PostgreSQL, the dev SoftHSM token and sealed imaging',
    './var',
    './var',
  ),
  embeddedPgPort: optionalInt(
    'EMBEDDED_PG_PORT',
    'Loopback TCP port of the embedded PostgreSQL; unset = a Unix socket in DATA_DIR/run (a free loopback port where that path is too long for a socket)',
    '54329',
    1024,
    65535,
  ),
  embeddedPgProfile: oneOf(
    'EMBEDDED_PG_PROFILE',
    'Write profile of the embedded PostgreSQL: small (light disk use) or throughput (about 2 GB of WAL prepared at first start, for the intake latency targets)',
    EMBEDDED_PG_PROFILES,
    'small',
  ),
  hsmModule: optional(
    'HSM_MODULE',
    'PKCS#11 library; unset = SoftHSM with a dev token in DATA_DIR/softhsm',
    '/usr/lib/softhsm/libsofthsm2.so',
  ),
  hsmTokenLabel: str(
    'HSM_TOKEN_LABEL',
    'Label of the HSM token holding the gateway keys',
    'fhir-gateway',
    'fhir-gateway',
  ),
  hsmPin: optional('HSM_PIN', 'User PIN of the token (prefer HSM_PIN_FILE)', '1234'),
  hsmPinFile: optional('HSM_PIN_FILE', 'File holding the token user PIN', '/run/secrets/hsm-pin'),
  hsmSessions: int(
    'HSM_SESSIONS',
    'PKCS#11 sessions in the pool (one operation each at a time)',
    Math.max(2, availableParallelism()),
    1,
    256,
  ),
  hsmKdf: oneOf(
    'HSM_KDF',
    'in-token: Concat KDF via C_DigestKey (Z never leaves the HSM); extract: for tokens without C_DigestKey',
    ['in-token', 'extract'] as const,
    'in-token',
  ),
  logLevel: oneOf(
    'LOG_LEVEL',
    'pino log level',
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const,
    'info',
  ),
  bodyLimit: int(
    'BODY_LIMIT',
    'Largest FHIR request body in bytes (413 above)',
    10 * 1024 * 1024,
    1024,
    1024 * 1024 * 1024,
  ),
  bodyMinRate: int(
    'BODY_MIN_RATE',
    'Slowest request body accepted, in bytes per second over BODY_RATE_WINDOW: a slower body is cut with 408',
    1024,
    1,
    1024 * 1024 * 1024,
  ),
  bodyRateWindow: duration(
    'BODY_RATE_WINDOW',
    'Window over which BODY_MIN_RATE is measured; a body that stalls is cut within two windows',
    '15s',
  ),
  jsonMaxDepth: int('JSON_MAX_DEPTH', 'Deepest JSON nesting accepted in a FHIR body', 64, 8, 1000),
  workerConcurrency: int('WORKER_CONCURRENCY', 'Jobs each worker runs at once', 8, 1, 256),
  deliveryTimeout: duration('DELIVERY_TIMEOUT', 'Timeout of one delivery attempt', '30s'),
  deliveryMaxAttempts: int('DELIVERY_MAX_ATTEMPTS', 'Attempts before a delivery is marked failed', 12, 1, 100),
  deliveryHorizon: duration('DELIVERY_HORIZON', 'Longest time a delivery is retried before it is marked failed', '24h'),
  databaseStartWait: duration(
    'DATABASE_START_WAIT',
    'How long a starting process waits for DATABASE_URL to answer (server down, no primary promoted yet) before it gives up',
    '60s',
  ),
  protocolV2: oneOf(
    'PROTOCOL_V2',
    'Post-quantum protocol v2 (ML-KEM hybrid envelopes, ES256 + ML-DSA signatures): on publishes our post-quantum keys and sends v2 to every partner that publishes both of its own; off sends and asks for v1 only',
    ['on', 'off'] as const,
    'on',
  ),
  pqDowngrade: oneOf(
    'PQ_DOWNGRADE',
    'When a partner once seen with post-quantum keys no longer publishes them: hold keeps its deliveries waiting for an operator (gateway deliveries downgrade); allow-v1 sends them as v1',
    ['hold', 'allow-v1'] as const,
    'hold',
  ),
  retentionOutbound: duration(
    'RETENTION_OUTBOUND',
    'How long a delivered bundle envelope (its signed receipt verified) is kept before its sealed content is purged; 0 keeps it forever',
    '30d',
  ),
  retentionInbox: duration(
    'RETENTION_INBOX',
    'How long a received bundle is kept after the EHR took it (acknowledged, or forwarded) before its sealed content is purged; 0 keeps it forever',
    '30d',
  ),
  retentionImaging: duration(
    'RETENTION_IMAGING',
    'How long imaging content of either direction (delivered, or taken by the EHR) is kept before its sealed file and manifest are purged; 0 keeps it forever',
    '30d',
  ),
  retentionBatch: int('RETENTION_BATCH', 'Rows the retention job purges per statement', 500, 1, 10000),
  retentionPause: duration(
    'RETENTION_PAUSE',
    'Pause between two retention batches, so intake and receipts keep the database',
    '200ms',
  ),
  clockSkew: duration('CLOCK_SKEW', 'Accepted clock difference for iat/exp checks', '5m'),
  inboxBodyLimit: int(
    'INBOX_BODY_LIMIT',
    'Largest sealed envelope accepted on POST /inbox, in bytes (a JWE is about 1.8x its bundle)',
    32 * 1024 * 1024,
    1024,
    2 * 1024 * 1024 * 1024 - 1,
  ),
  inboxBufferBudget: int(
    'INBOX_BUFFER_BUDGET',
    'Bytes of POST /inbox bodies held in memory at once, across all requests, before their senders are authenticated (keep it at least INBOX_BODY_LIMIT); a body that does not fit is answered 503 with Retry-After before it is read',
    64 * 1024 * 1024,
    1024,
    2 ** 40,
  ),
  inboxMaxAge: duration(
    'INBOX_MAX_AGE',
    "Oldest signed content (iat) POST /inbox accepts; must exceed senders' DELIVERY_HORIZON, since envelopes are signed once and retried",
    '48h',
  ),
  localFhirBaseUrl: url(
    'LOCAL_FHIR_BASE_URL',
    'Local EHR FHIR base URL: received bundles are forwarded there (POST) as a queued job; unset = pull only',
    'https://ehr.example-hospital.org/fhir',
    ['http:', 'https:'],
  ),
  rateLimit: int(
    'RATE_LIMIT',
    'Requests per minute per API client (token bucket; 0 = unlimited); a client row may override it',
    600,
    0,
    1_000_000,
  ),
  accessTokenTtl: int('ACCESS_TOKEN_TTL', 'Lifetime of an access token in seconds (SMART: at most 300)', 300, 30, 300),
  tlsCertFile: optional(
    'TLS_CERT_FILE',
    'PEM certificate chain: serve HTTPS (with TLS_KEY_FILE)',
    '/etc/gateway/tls/fullchain.pem',
  ),
  tlsKeyFile: optional('TLS_KEY_FILE', 'PEM private key of the HTTPS listener', '/etc/gateway/tls/privkey.pem'),
  tlsMinVersion: oneOf('TLS_MIN_VERSION', 'Oldest TLS version accepted', ['TLSv1.2', 'TLSv1.3'] as const, 'TLSv1.2'),
  tlsClientCaFile: optional(
    'TLS_CLIENT_CA_FILE',
    'PEM CA(s) for mutual TLS on the peer routes (POST /inbox, POST /inbox/imaging): peers must present a certificate from it, bound to a partner',
    '/etc/gateway/tls/partners-ca.pem',
  ),
  hstsMaxAge: int(
    'HSTS_MAX_AGE',
    'Strict-Transport-Security max-age in seconds when serving HTTPS',
    31_536_000,
    0,
    63_072_000,
  ),
  oidcIssuer: url(
    'OIDC_ISSUER',
    'OpenID Connect issuer for single sign-on to /audit/ui and /console (unset = local accounts only)',
    'https://login.example-hospital.org/realms/staff',
    ['https:', 'http:'],
  ),
  oidcClientId: optional('OIDC_CLIENT_ID', "The gateway's client id at the OpenID Connect issuer", 'fhir-gateway'),
  oidcClientSecret: optional(
    'OIDC_CLIENT_SECRET',
    "The gateway's client secret at the issuer (prefer OIDC_CLIENT_SECRET_FILE)",
    'change-me',
  ),
  oidcClientSecretFile: optional(
    'OIDC_CLIENT_SECRET_FILE',
    'File holding the client secret at the issuer',
    '/run/secrets/oidc-client-secret',
  ),
  oidcRoleClaim: str(
    'OIDC_ROLE_CLAIM',
    "ID token claim that lists the signed-in person's groups or roles",
    'groups',
    'groups',
  ),
  oidcOperatorRole: str(
    'OIDC_OPERATOR_ROLE',
    'Value of OIDC_ROLE_CLAIM that grants the operator role (/console)',
    'gateway-operators',
    'gateway-operators',
  ),
  oidcComplianceRole: str(
    'OIDC_COMPLIANCE_ROLE',
    'Value of OIDC_ROLE_CLAIM that grants the compliance role (/audit/ui)',
    'gateway-compliance',
    'gateway-compliance',
  ),
  localLogin: {
    env: 'LOCAL_LOGIN',
    help: 'Local accounts (break-glass) on the browser pages: on or off (default off when OIDC_ISSUER is set)',
    example: 'off',
    parse: (raw, all) => {
      if (raw === undefined || raw === '') return !all['OIDC_ISSUER'];
      if (raw !== 'on' && raw !== 'off') throw new BadValue('must be one of on, off');
      return raw === 'on';
    },
  } satisfies Field<boolean>,
  mfaRequired: {
    env: 'MFA_REQUIRED',
    help: 'Local accounts need a second factor (a passkey or a TOTP app): on or off; without one a password reaches only the enrolment page (default on unless HOST and PUBLIC_URL are both loopback)',
    example: 'on',
    parse: (raw, all) => {
      if (raw === undefined || raw === '') return !loopbackOnly(all['HOST'], all['PUBLIC_URL']);
      if (raw !== 'on' && raw !== 'off') throw new BadValue('must be one of on, off');
      return raw === 'on';
    },
  } satisfies Field<boolean>,
  deliveryRetryBase: duration(
    'DELIVERY_RETRY_BASE',
    'First retry delay of a transient delivery failure (doubles per attempt, with jitter)',
    '10s',
  ),
  deliveryRetryMax: duration('DELIVERY_RETRY_MAX', 'Longest delay between two delivery attempts', '1h'),
  jwksTimeout: duration('JWKS_TIMEOUT', 'Timeout of one partner JWKS fetch', '5s'),
  jwksMaxBytes: int('JWKS_MAX_BYTES', 'Largest partner JWKS document accepted, in bytes', 65536, 512, 1024 * 1024),
  jwksRefreshCooldown: duration(
    'JWKS_REFRESH_COOLDOWN',
    'Least time between two JWKS refreshes triggered by an unknown kid',
    '30s',
  ),
  dicomMaxBytes: int(
    'DICOM_MAX_BYTES',
    'Largest DICOM file accepted on POST /imaging, in bytes (413 above)',
    4 * 1024 * 1024 * 1024,
    132,
    2 ** 48,
  ),
  dicomHeadBytes: int(
    'DICOM_HEAD_BYTES',
    'Bytes of each DICOM file held in memory to parse its file meta and identifying attributes',
    4 * 1024 * 1024,
    64 * 1024,
    256 * 1024 * 1024,
  ),
  dicomInflateMax: int(
    'DICOM_INFLATE_MAX',
    'Largest inflated data set of a deflated-transfer-syntax DICOM file, in bytes',
    64 * 1024 * 1024,
    1024,
    1024 * 1024 * 1024,
  ),
  dicomInflateConcurrency: int(
    'DICOM_INFLATE_CONCURRENCY',
    'Deflated DICOM files inflated and checked at once, each in a worker thread off the event loop; a few more wait, the rest get 503',
    2,
    1,
    64,
  ),
  imagingCutThrough: oneOf(
    'IMAGING_CUT_THROUGH',
    'on: imaging content streams to the recipient while it is being sealed (the stored copy is the retry path); off: only the delivery job sends it',
    ['on', 'off'] as const,
    'on',
  ),
  imagingMaxInstances: int(
    'IMAGING_MAX_INSTANCES',
    'Most DICOM instances in one multipart/related imaging submission',
    5000,
    1,
    100000,
  ),
  keySigRotation: duration(
    'KEY_SIG_ROTATION',
    'Lifetime of a signing key before the next one is activated (NIST SP 800-57 cryptoperiod)',
    '90d',
  ),
  keyEncRotation: duration(
    'KEY_ENC_ROTATION',
    'Lifetime of an encryption (ECDH-ES) key before the next one is activated',
    '30d',
  ),
  keyAuditRotation: duration('KEY_AUDIT_ROTATION', 'Lifetime of the audit checkpoint signing key', '365d'),
  keyBlindingRotation: duration(
    'KEY_BLINDING_ROTATION',
    'Lifetime of the HMAC key that blinds patient identifiers before the next one blinds new entries (retired ones stay in the HSM for lookup)',
    '365d',
  ),
  keyPrepublish: duration(
    'KEY_PREPUBLISH',
    'How long a new key is published in the JWKS before it is used; must exceed JWKS_MAX_AGE',
    '2d',
  ),
  keyRetentionMargin: duration(
    'KEY_RETENTION_MARGIN',
    'Kept beyond DELIVERY_HORIZON before a retired key is destroyed in the HSM; at least JWKS_MAX_AGE',
    '1d',
  ),
  jwksMaxAge: duration(
    'JWKS_MAX_AGE',
    'Cache-Control max-age of /.well-known/jwks.json (how long peers may cache our keys)',
    '5m',
  ),
  partnerJwksRefresh: duration(
    'PARTNER_JWKS_REFRESH',
    "How often every partner's JWKS is refetched and recorded in the key-transparency log",
    '1h',
  ),
  partnerLogCheck: duration(
    'PARTNER_LOG_CHECK',
    "How often a partner's audit log is checked for consistency when no receipt awaits its evidence (receipts are asked for every minute)",
    '1h',
  ),
  metricsListen: {
    env: 'METRICS_LISTEN',
    help: 'Where GET /metrics (Prometheus) is served: main (this listener, admin scope), HOST:PORT (a plain HTTP listener of its own, no token: keep it on loopback or a private network), or off',
    example: 'main',
    parse: (raw): MetricsListen => {
      const v = raw === undefined || raw === '' ? 'main' : raw.trim();
      if (v === 'off' || v === 'main') return { mode: v };
      const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(v);
      const port = Number(m?.[2]);
      if (!m || port < 1 || port > 65535) throw new BadValue('must be off, main or HOST:PORT such as 127.0.0.1:9464');
      return { mode: 'listen', host: String(m[1]).replace(/^\[|\]$/g, ''), port };
    },
  } satisfies Field<MetricsListen>,
} as const;

/**
 * Whether only this machine can reach the browser pages: the listener is on
 * loopback (HOST, loopback by default) and so is PUBLIC_URL when set (a
 * loopback listener behind a reverse proxy with a public address is not).
 */
export function loopbackOnly(host: string | undefined, publicUrl: string | undefined): boolean {
  const loopback = (name: string) => {
    const h = name.toLowerCase().replace(/^\[|\]$/g, '');
    return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
  };
  if (!loopback(host || DEFAULT_HOST)) return false;
  if (!publicUrl) return true;
  try {
    return loopback(new URL(publicUrl).hostname);
  } catch {
    return false; // PUBLIC_URL's own check reports it
  }
}

/** METRICS_LISTEN: no /metrics, /metrics on the main listener (admin scope), or a listener of its own. */
export type MetricsListen = { mode: 'off' } | { mode: 'main' } | { mode: 'listen'; host: string; port: number };

type FieldType<F> = F extends Field<infer T> ? T : never;
export type Config = { [K in keyof typeof schema]: FieldType<(typeof schema)[K]> } & {
  /** Derived: the PIN from HSM_PIN or HSM_PIN_FILE, if either is set. */
  resolvedPin: string | undefined;
  /** Derived: PUBLIC_URL, or http(s)://HOST:PORT (https when TLS_CERT_FILE is set). */
  baseUrl: string;
  /** Derived: ORG_ID, or the base URL. */
  org: string;
};

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(schema) as Array<[string, Field<unknown>]>) {
    try {
      out[key] = field.parse(env[field.env], env);
    } catch (err) {
      if (!(err instanceof BadValue)) throw err;
      problems.push(
        `${field.env}=${JSON.stringify(env[field.env] ?? '')} ${err.message}. Fix: set ${field.env} (${field.help}), e.g. ${field.env}=${field.example}`,
      );
    }
  }
  const cfg = out as Omit<Config, 'resolvedPin' | 'baseUrl' | 'org'>;
  let resolvedPin: string | undefined = cfg.hsmPin;
  if (problems.length === 0 && cfg.hsmPinFile) {
    try {
      resolvedPin = readFileSync(cfg.hsmPinFile, 'utf8').trim();
    } catch (err) {
      problems.push(
        `HSM_PIN_FILE=${cfg.hsmPinFile} cannot be read (${(err as NodeJS.ErrnoException).code}). Fix: point HSM_PIN_FILE at a readable file holding the PIN.`,
      );
    }
  }
  if (Boolean(cfg.tlsCertFile) !== Boolean(cfg.tlsKeyFile)) {
    problems.push(
      'TLS_CERT_FILE and TLS_KEY_FILE go together. Fix: set both to serve HTTPS, or neither for plain HTTP on loopback.',
    );
  }
  if (cfg.tlsClientCaFile && !cfg.tlsCertFile) {
    problems.push('TLS_CLIENT_CA_FILE needs HTTPS. Fix: also set TLS_CERT_FILE and TLS_KEY_FILE.');
  }
  if (cfg.hsmModule && !resolvedPin && problems.length === 0) {
    problems.push('HSM_MODULE is set but no PIN is given. Fix: set HSM_PIN_FILE (or HSM_PIN) to the token user PIN.');
  }
  if (cfg.oidcIssuer && (!cfg.oidcClientId || !(cfg.oidcClientSecret || cfg.oidcClientSecretFile))) {
    problems.push(
      'OIDC_ISSUER needs a client. Fix: also set OIDC_CLIENT_ID and OIDC_CLIENT_SECRET_FILE (or OIDC_CLIENT_SECRET).',
    );
  }
  if (problems.length === 0) problems.push(...keyLifecycleProblems(cfg));
  if (problems.length) throw new ConfigError(problems);
  const baseUrl =
    cfg.publicUrl ??
    `${cfg.tlsCertFile ? 'https' : 'http'}://${cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host}:${cfg.port}`;
  return { ...cfg, dataDir: resolve(cfg.dataDir), resolvedPin, baseUrl, org: cfg.orgId ?? baseUrl };
}

/** The table in the README is generated from the schema, so the two never drift. */
export function configTable(): string {
  const rows = Object.values(schema).map((f: Field<unknown>) => `| \`${f.env}\` | ${f.help} | \`${f.example}\` |`);
  return ['| variable | meaning | example |', '|---|---|---|', ...rows].join('\n');
}

/** Key lifecycle timings that only make sense together (see docs/SECURITY.md, Key lifecycle). */
function keyLifecycleProblems(
  c: Pick<
    Config,
    'keyPrepublish' | 'jwksMaxAge' | 'keyRetentionMargin' | 'keySigRotation' | 'keyEncRotation' | 'keyAuditRotation'
  >,
): string[] {
  const out: string[] = [];
  if (c.keyPrepublish <= c.jwksMaxAge) {
    out.push(
      "KEY_PREPUBLISH must exceed JWKS_MAX_AGE, so every peer's cached copy of our JWKS holds a new key before we use it. Fix: raise KEY_PREPUBLISH (e.g. KEY_PREPUBLISH=2d) or lower JWKS_MAX_AGE.",
    );
  }
  if (c.keyRetentionMargin < c.jwksMaxAge) {
    out.push(
      'KEY_RETENTION_MARGIN must be at least JWKS_MAX_AGE: peers may seal to a retired encryption key until their cached JWKS expires. Fix: raise KEY_RETENTION_MARGIN (e.g. KEY_RETENTION_MARGIN=1d).',
    );
  }
  for (const [name, value] of [
    ['KEY_SIG_ROTATION', c.keySigRotation],
    ['KEY_ENC_ROTATION', c.keyEncRotation],
    ['KEY_AUDIT_ROTATION', c.keyAuditRotation],
  ] as const) {
    if (value <= c.keyPrepublish)
      out.push(
        `${name} must exceed KEY_PREPUBLISH (a key must be used for longer than it waits to be used). Fix: raise ${name} or lower KEY_PREPUBLISH.`,
      );
  }
  return out;
}

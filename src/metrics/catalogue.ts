/**
 * Every metric the gateway exposes on /metrics: one list, so the README, the
 * alert rules and the dashboard are checked against the same names. Labels are
 * bounded (partner, kind, state, use, code, task, route): never an exchange id.
 */
export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricSpec {
  name: string;
  type: MetricType;
  help: string;
  labels: readonly string[];
  /** Where the value comes from: the durable tables (every process reports the same) or this process. */
  source: 'database' | 'process';
}

const m = (
  name: string,
  type: MetricType,
  source: MetricSpec['source'],
  labels: readonly string[],
  help: string,
): MetricSpec => ({ name, type, help, labels, source });

export const METRICS = {
  deliveries: m(
    'gateway_deliveries',
    'gauge',
    'database',
    ['partner', 'kind', 'state'],
    'Deliveries by partner, kind (bundle, imaging) and state (pending, delivered, failed)',
  ),
  oldestUndelivered: m(
    'gateway_delivery_oldest_pending_age_seconds',
    'gauge',
    'database',
    ['partner'],
    'Age of the oldest pending (not yet delivered) delivery to each partner; absent when none is pending',
  ),
  attempts: m(
    'gateway_delivery_attempts_total',
    'counter',
    'database',
    ['kind', 'outcome'],
    'Delivery attempts ever made, by kind and outcome (delivered, transient, permanent, invalid-receipt)',
  ),
  purged: m(
    'gateway_retention_purged_total',
    'counter',
    'database',
    ['kind'],
    'Sealed contents purged by retention, by kind (bundle, imaging, inbox, inbox-imaging); their rows remain as tombstones',
  ),
  receiptLag: m(
    'gateway_delivery_receipt_lag_seconds',
    'histogram',
    'database',
    ['kind'],
    'Time from submission to the verified signed receipt, over every delivered delivery',
  ),
  requests: m(
    'gateway_http_requests_total',
    'counter',
    'process',
    ['route', 'status'],
    'Intake and inbox requests answered by this process, by route group and status class',
  ),
  refusals: m(
    'gateway_http_refusals_total',
    'counter',
    'process',
    ['route', 'code'],
    'Intake and inbox requests refused with a 4xx by this process, by route group and error code',
  ),
  requestDuration: m(
    'gateway_http_request_duration_seconds',
    'histogram',
    'process',
    ['route'],
    'Latency of intake and inbox requests answered by this process',
  ),
  jobs: m(
    'gateway_jobs_queued',
    'gauge',
    'database',
    ['task'],
    'Jobs in the graphile-worker queue, by task (due now or later, locked or not)',
  ),
  oldestJob: m(
    'gateway_jobs_oldest_due_age_seconds',
    'gauge',
    'database',
    ['task'],
    'How long the oldest job that is due and not locked has waited, by task; absent when none',
  ),
  hsmSessions: m(
    'gateway_hsm_sessions',
    'gauge',
    'process',
    ['state'],
    'HSM sessions of this process by state (busy, idle), and callers waiting for one (waiting)',
  ),
  hsmWaits: m(
    'gateway_hsm_session_waits_total',
    'counter',
    'process',
    [],
    'HSM operations that waited for a free session',
  ),
  hsmErrors: m('gateway_hsm_errors_total', 'counter', 'process', [], 'HSM operations that failed with a PKCS#11 error'),
  dbPool: m(
    'gateway_db_pool_connections',
    'gauge',
    'process',
    ['state'],
    'PostgreSQL connections of this process by state (total, idle), and callers waiting for one (waiting)',
  ),
  keyRotation: m(
    'gateway_key_rotation_due_seconds',
    'gauge',
    'database',
    ['use'],
    'Seconds until the active own key of each use (sig, enc, audit, blinding) reaches its cryptoperiod; negative when overdue',
  ),
  partnerKeyExpiry: m(
    'gateway_partner_key_expiry_seconds',
    'gauge',
    'database',
    ['partner', 'kid'],
    'Seconds until a published partner key expires, for partner keys that carry an exp',
  ),
  checkpointAge: m(
    'gateway_audit_checkpoint_age_seconds',
    'gauge',
    'database',
    [],
    'Age of the last signed audit checkpoint; absent before the first',
  ),
  auditUnsigned: m(
    'gateway_audit_oldest_unsigned_age_seconds',
    'gauge',
    'database',
    [],
    'Age of the oldest audit entry not yet covered by a signed checkpoint; absent when every entry is covered',
  ),
  jwksRefreshFailing: m(
    'gateway_partner_jwks_refresh_failing',
    'gauge',
    'database',
    ['partner'],
    "1 when the last refresh of a partner's JWKS failed, else 0",
  ),
  jwksCheckAge: m(
    'gateway_partner_jwks_last_check_age_seconds',
    'gauge',
    'database',
    ['partner'],
    "Age of the last refresh attempt of each partner's JWKS",
  ),
  partnerLogInconsistent: m(
    'gateway_partner_audit_log_inconsistent',
    'gauge',
    'database',
    ['partner'],
    "1 when a partner's audit log contradicted a checkpoint it signed before (forked, rewritten or shrunken), until an operator clears it; else 0",
  ),
  scrapeErrors: m(
    'gateway_metrics_collect_errors_total',
    'counter',
    'process',
    [],
    'Scrapes whose database aggregates could not be read (the state metrics are then left out)',
  ),
} as const satisfies Record<string, MetricSpec>;

export type MetricKey = keyof typeof METRICS;

/** Every metric name as Prometheus sees it, histograms with their series suffixes. */
export function exposedNames(): Set<string> {
  const names = new Set<string>();
  for (const spec of Object.values(METRICS)) {
    names.add(spec.name);
    if (spec.type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(spec.name + s);
  }
  return names;
}

/** The README's metrics table (between its metrics:start and metrics:end markers). */
export function metricsTable(): string {
  const rows = Object.values(METRICS).map(
    (spec: MetricSpec) =>
      `| \`${spec.name}\` | ${spec.type} | ${spec.labels.map((l) => `\`${l}\``).join(', ') || '-'} | ${spec.source === 'database' ? 'tables' : 'process'} | ${spec.help} |`,
  );
  return ['| metric | type | labels | from | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}

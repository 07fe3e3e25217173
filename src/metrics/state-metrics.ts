import type { Registry } from 'prom-client';
import { METRICS, type MetricSpec } from './catalogue.ts';
import { RECEIPT_LAG_BUCKETS, type StateSnapshot } from './state-queries.ts';

/** The rotation period of each own key use, in milliseconds. */
export type RotationPeriods = Record<string, number>;

interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

type Samples = (s: StateSnapshot, nowMs: number) => Sample[];

const SAMPLES: Record<string, (periods: RotationPeriods) => Samples> = {
  [METRICS.deliveries.name]: () => (s) =>
    s.deliveries.map((d) => ({ labels: { partner: d.partner, kind: d.kind, state: d.state }, value: d.count })),
  [METRICS.oldestUndelivered.name]: () => (s) =>
    s.oldestPending.map((o) => ({ labels: { partner: o.partner }, value: o.ageSeconds })),
  [METRICS.attempts.name]: () => (s) =>
    s.attempts.map((a) => ({ labels: { kind: a.kind, outcome: a.outcome }, value: a.count })),
  [METRICS.purged.name]: () => (s) => s.purged.map((p) => ({ labels: { kind: p.kind }, value: p.count })),
  [METRICS.receiptLag.name]: () => (s) =>
    s.receiptLag.flatMap((h) => [
      ...[...RECEIPT_LAG_BUCKETS, '+Inf' as const].map((le, i) => ({
        metricName: `${METRICS.receiptLag.name}_bucket`,
        labels: { kind: h.kind, le },
        value: h.buckets[i] ?? 0,
      })),
      { metricName: `${METRICS.receiptLag.name}_sum`, labels: { kind: h.kind }, value: h.sum },
      { metricName: `${METRICS.receiptLag.name}_count`, labels: { kind: h.kind }, value: h.count },
    ]),
  [METRICS.jobs.name]: () => (s) => s.jobs.map((j) => ({ labels: { task: j.task }, value: j.count })),
  [METRICS.oldestJob.name]: () => (s) =>
    s.jobs.flatMap((j) =>
      j.oldestDueAgeSeconds === null ? [] : [{ labels: { task: j.task }, value: j.oldestDueAgeSeconds }],
    ),
  [METRICS.keyRotation.name]: (periods) => (s, nowMs) =>
    s.activeKeys.flatMap((k) => {
      const period = periods[k.use];
      if (period === undefined) return [];
      return [{ labels: { use: k.use }, value: (k.activatedAt.getTime() + period - nowMs) / 1000 }];
    }),
  [METRICS.partnerKeyExpiry.name]: () => (s) =>
    s.partnerKeyExpiry.map((k) => ({ labels: { partner: k.partner, kid: k.kid }, value: k.seconds })),
  [METRICS.checkpointAge.name]: () => (s) =>
    s.checkpointAgeSeconds === null ? [] : [{ labels: {}, value: s.checkpointAgeSeconds }],
  [METRICS.auditUnsigned.name]: () => (s) =>
    s.oldestUnsignedAgeSeconds === null ? [] : [{ labels: {}, value: s.oldestUnsignedAgeSeconds }],
  [METRICS.jwksRefreshFailing.name]: () => (s) =>
    s.jwksChecks.map((c) => ({ labels: { partner: c.partner }, value: c.ok ? 0 : 1 })),
  [METRICS.jwksCheckAge.name]: () => (s) =>
    s.jwksChecks.map((c) => ({ labels: { partner: c.partner }, value: c.ageSeconds })),
  [METRICS.partnerLogInconsistent.name]: () => (s) =>
    s.partnerLogs.map((p) => ({ labels: { partner: p.partner }, value: p.inconsistent ? 1 : 0 })),
};

/**
 * Register every database-sourced metric of the catalogue on `registry`. Each
 * one reads the shared snapshot; when it cannot be read the state metrics are
 * left out of that scrape (a gap Prometheus shows) rather than reported as zero.
 */
export function registerStateMetrics(
  registry: Registry,
  snapshot: () => Promise<StateSnapshot | undefined>,
  periods: RotationPeriods,
): void {
  const specs = Object.values(METRICS).filter((spec: MetricSpec) => spec.source === 'database');
  for (const spec of specs) {
    const samples = SAMPLES[spec.name]?.(periods);
    if (!samples) throw new Error(`no samples for the state metric ${spec.name}`);
    registry.registerMetric({
      name: spec.name,
      get: async () => {
        const s = await snapshot();
        return {
          name: spec.name,
          help: spec.help,
          type: spec.type,
          values: s ? samples(s, Date.now()) : [],
          aggregator: 'first',
        };
      },
    } as unknown as Parameters<Registry['registerMetric']>[0]);
  }
}

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { exposedNames, METRICS, metricsTable } from '../../src/metrics/catalogue.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const RULES = `${root}deploy/prometheus/gateway-alerts.yml`;
const RULE_TESTS = `${root}deploy/prometheus/gateway-alerts.test.yml`;
const DASHBOARD = `${root}deploy/grafana/gateway-dashboard.json`;

interface Rule {
  alert: string;
  expr: string;
  for?: string;
}
interface AlertTest {
  input_series: { series: string }[];
  alert_rule_test: { eval_time: string; alertname: string; exp_alerts: { exp_labels: Record<string, string> }[] }[];
}

const rules = (parse(readFileSync(RULES, 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const ruleTests = (parse(readFileSync(RULE_TESTS, 'utf8')) as { tests: AlertTest[] }).tests;

/** The gateway metric names a PromQL expression or series selector refers to. */
const namesIn = (text: string) => [...text.matchAll(/\bgateway_[a-z0-9_]+/g)].map((m) => m[0]);

describe('alert rules (deploy/prometheus)', () => {
  it('pass promtool check rules and their unit tests (promtool test rules)', () => {
    execFileSync('promtool', ['check', 'rules', RULES], { stdio: 'pipe' });
    execFileSync('promtool', ['test', 'rules', RULE_TESTS], { stdio: 'pipe', cwd: `${root}deploy/prometheus` });
  });

  it('use only metrics of the catalogue, and no per-exchange label', () => {
    const catalogue = exposedNames();
    for (const rule of rules) {
      const names = namesIn(rule.expr);
      expect(names.length, rule.alert).toBeGreaterThan(0);
      for (const name of names) expect(catalogue.has(name), `${rule.alert}: ${name}`).toBe(true);
      expect(rule.expr).not.toMatch(/exchange|delivery_id/);
    }
    for (const t of ruleTests)
      for (const s of t.input_series) for (const n of namesIn(s.series)) expect(catalogue.has(n), n).toBe(true);
  });

  it('are each tested firing, resolved afterwards and quiet beforehand, and each waits out a for:', () => {
    for (const rule of rules) {
      expect(rule.for, rule.alert).toBeDefined();
      const cases = ruleTests.flatMap((t) => t.alert_rule_test).filter((c) => c.alertname === rule.alert);
      const minutes = (c: { eval_time: string }) => Number(/^(\d+)m$/.exec(c.eval_time)?.[1]);
      const fired = cases.filter((c) => c.exp_alerts.length > 0);
      expect(fired.length, `${rule.alert} fires in a test`).toBeGreaterThan(0);
      // One alert per condition: aggregated (by partner or per gateway), never one per process.
      for (const c of fired) expect(c.exp_alerts, `${rule.alert} at ${c.eval_time}`).toHaveLength(1);
      const first = Math.min(...fired.map(minutes));
      const last = Math.max(...fired.map(minutes));
      expect(
        cases.some((c) => c.exp_alerts.length === 0 && minutes(c) < first),
        `${rule.alert} quiet before`,
      ).toBe(true);
      expect(
        cases.some((c) => c.exp_alerts.length === 0 && minutes(c) > last),
        `${rule.alert} resolves`,
      ).toBe(true);
    }
  });
});

describe('Grafana dashboard (deploy/grafana)', () => {
  it('queries only metrics of the catalogue', () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const catalogue = exposedNames();
    const used = new Set<string>();
    for (const panel of dashboard.panels)
      for (const target of panel.targets) {
        const names = namesIn(target.expr);
        expect(names.length, panel.title).toBeGreaterThan(0);
        for (const name of names) {
          expect(catalogue.has(name), `${panel.title}: ${name}`).toBe(true);
          used.add(name.replace(/_(bucket|sum|count)$/, ''));
        }
      }
    // Every metric has a place on the dashboard.
    for (const spec of Object.values(METRICS)) expect(used.has(spec.name), spec.name).toBe(true);
  });
});

describe('README operations section', () => {
  const readme = readFileSync(`${root}README.md`, 'utf8');

  it('lists every metric exactly as the catalogue defines it', () => {
    const block = /<!-- metrics:start -->\n([\s\S]*?)\n<!-- metrics:end -->/.exec(readme)?.[1];
    // Regenerate with: node_modules/.bin/node scripts/readme-config.ts
    expect(block).toBe(metricsTable());
  });

  it('says what to do for every alert', () => {
    for (const rule of rules) expect(readme, rule.alert).toMatch(new RegExp(`\\| \`${rule.alert}\` \\| .+ \\| .+ \\|`));
  });
});

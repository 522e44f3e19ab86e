import { describe, expect, it } from 'vitest';
import { exportedMetricNames, METRICS } from '../common/metrics';
import {
  expressions,
  metricNames,
  readAlertRules,
  readDashboard,
  referencedMetricNames,
  SDK_METRICS_USED,
} from './support/deploy';

describe('Grafana dashboard and Prometheus alert rules name only metrics the service exports', () => {
  it('the dashboard is Grafana JSON with a Prometheus query in every panel', () => {
    const dashboard = readDashboard();
    expect(dashboard.uid).toBe('anc-credential-service');
    const panels = dashboard.panels.filter((p) => p.type !== 'row');
    expect(panels.length).toBeGreaterThanOrEqual(12);
    for (const panel of panels) expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
  });

  it('the alert rules cover KEK expiry, rotation failures, 429 rate and the health check failure rate', () => {
    const rules = readAlertRules().groups.flatMap((g) => g.rules);
    const byName = new Map(rules.map((r) => [r.alert, r]));
    const expectRule = (name: string, metric: string) => {
      const rule = byName.get(name);
      expect(rule, name).toBeDefined();
      expect(metricNames(rule?.expr ?? ''), name).toContain(metric);
      expect(rule?.labels?.severity, name).toMatch(/^(warning|critical)$/);
      expect(rule?.annotations?.summary, name).toBeTruthy();
    };
    expectRule('AncKekNearExpiryWithoutNewVersion', 'anc_kek_days_to_expiry');
    expectRule('AncRotationFailures', 'anc_rotation_failures_total');
    expectRule('AncKeyVaultThrottling', 'anc_keyvault_throttled_total');
    expectRule('AncHealthCheckFailureRate', 'anc_health_checks_total');
  });

  it('every metric named is exported: the service metrics by definition, the SDK ones as listed', () => {
    const exported = new Set([...exportedMetricNames(), ...SDK_METRICS_USED]);
    for (const { where, expr } of expressions()) {
      const names = metricNames(expr);
      expect(names.length, `${where}: ${expr}`).toBeGreaterThan(0);
      for (const name of names) expect(exported.has(name), `${where} names ${name}`).toBe(true);
    }
    // And every service metric shows up somewhere on the dashboard.
    const referenced = new Set(referencedMetricNames());
    for (const m of Object.values(METRICS)) {
      const name = m.kind === 'counter' ? `${m.name}_total` : m.kind === 'histogram' ? `${m.name}_bucket` : m.name;
      expect(referenced.has(name), `${name} is on the dashboard or in an alert`).toBe(true);
    }
  });

  it('the name extraction finds metrics and ignores labels, strings and functions', () => {
    expect(
      metricNames(
        'sum by (le, operation) (rate(foo_bucket{status="failed", x=~"a|b"}[5m])) / clamp_min(bar_total, 1e-9)',
      ),
    ).toEqual(['foo_bucket', 'bar_total']);
    expect(metricNames('absent(anc_kek_days_to_expiry)')).toEqual(['anc_kek_days_to_expiry']);
  });
});

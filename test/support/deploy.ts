import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ROOT } from './stack';

/** The SDK runtime metrics the dashboard uses; test/metrics.test.ts checks each is on a live scrape. */
export const SDK_METRICS_USED = [
  'temporal_activity_execution_failed_total',
  'temporal_worker_task_slots_used',
  'temporal_workflow_task_schedule_to_start_latency_bucket',
];

export const DASHBOARD = `${ROOT}deploy/grafana/anc-credential-service.json`;
export const ALERTS = `${ROOT}deploy/prometheus/alerts.yml`;

export interface Dashboard {
  uid: string;
  title: string;
  panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }>;
}

export interface AlertRules {
  groups: Array<{
    name: string;
    rules: Array<{
      alert: string;
      expr: string;
      for?: string;
      labels?: Record<string, string>;
      annotations?: Record<string, string>;
    }>;
  }>;
}

export function readDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
}

export function readAlertRules(): AlertRules {
  return parse(readFileSync(ALERTS, 'utf8')) as AlertRules;
}

/** Every PromQL expression in the dashboard and the alert rules, with where it is. */
export function expressions(): Array<{ where: string; expr: string }> {
  const out: Array<{ where: string; expr: string }> = [];
  for (const panel of readDashboard().panels) {
    for (const t of panel.targets ?? []) out.push({ where: `dashboard panel "${panel.title}"`, expr: t.expr });
  }
  for (const group of readAlertRules().groups) {
    for (const rule of group.rules) out.push({ where: `alert ${rule.alert}`, expr: rule.expr });
  }
  return out;
}

// PromQL functions, aggregations and keywords the files use; any other name is a metric.
const PROMQL_WORDS = new Set([
  'sum',
  'max',
  'min',
  'avg',
  'count',
  'rate',
  'irate',
  'increase',
  'histogram_quantile',
  'clamp_min',
  'absent',
  'by',
  'without',
  'on',
  'ignoring',
  'and',
  'or',
  'unless',
  'bool',
  'offset',
]);

/**
 * The metric names an expression refers to: what is left once strings, label matchers, grouping
 * label lists, range durations, numbers and PromQL words are taken out.
 */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b\d+(\.\d+)?(e-?\d+)?\b/g, ' ');
  const names = stripped.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? [];
  return [...new Set(names.filter((n) => !PROMQL_WORDS.has(n)))];
}

export function referencedMetricNames(): string[] {
  return [...new Set(expressions().flatMap((e) => metricNames(e.expr)))].sort();
}

import type { MetricMeter, MetricTags } from '@temporalio/common';

/**
 * The service's own metrics, emitted through the Temporal SDK's metric meter (the activity
 * context's or the workflow's), so the worker's one Prometheus endpoint serves them next to the
 * SDK's runtime metrics. Labels are small fixed sets (operation, outcome, reason, error type):
 * never a tenant or ANC id, and never anything derived from a secret.
 *
 * Prometheus names: counters get `_total`; the latency histogram is exported in milliseconds.
 */
export const METRICS = {
  /** Credential versions sealed. operation: create | update | reseal. */
  seals: { name: 'anc_credential_seals', kind: 'counter', description: 'Credentials sealed under a tenant key' },
  /** Stored credentials opened. purpose: health_check | reseal. */
  opens: { name: 'anc_credential_opens', kind: 'counter', description: 'Stored credentials opened' },
  /** Calls to the KEK service. operation, outcome: success | throttled | not_found | refused | error. */
  keyVaultRequests: {
    name: 'anc_keyvault_requests',
    kind: 'counter',
    description: 'Key Vault calls by operation and outcome',
  },
  keyVaultLatency: {
    name: 'anc_keyvault_request_duration',
    kind: 'histogram',
    unit: 'ms',
    description: 'Key Vault call latency (including the SDK retries inside one call)',
  },
  /** HTTP 429 answers from Key Vault (each one, before the SDK's retry). */
  keyVaultThrottled: { name: 'anc_keyvault_throttled', kind: 'counter', description: 'Key Vault 429 responses' },
  /** HTTP attempts after the first for the same Key Vault request (429 and 5xx back-off). */
  keyVaultRetries: { name: 'anc_keyvault_retries', kind: 'counter', description: 'Key Vault HTTP retries' },
  /** Password envelopes refused. reason: an error type (InvalidEnvelope, EnvelopeExpired, EnvelopeReused). */
  envelopeRejections: {
    name: 'anc_envelope_rejections',
    kind: 'counter',
    description: 'Password envelopes refused, by reason',
  },
  /** Health checks finished. status: passed | warning | failed; error_type: none or the health error type. */
  healthChecks: { name: 'anc_health_checks', kind: 'counter', description: 'Health checks by outcome and error type' },
  rotationRewrapped: {
    name: 'anc_rotation_tenant_keys_rewrapped',
    kind: 'counter',
    description: 'Tenant keys re-wrapped with the current KEK version',
  },
  rotationReplaced: {
    name: 'anc_rotation_tenant_keys_replaced',
    kind: 'counter',
    description: 'Expired tenant keys replaced by a new version',
  },
  /** phase: rewrap | replace. */
  rotationFailures: {
    name: 'anc_rotation_failures',
    kind: 'counter',
    description: 'Tenant keys a rotation could not re-wrap or replace',
  },
  rotationRemaining: {
    name: 'anc_rotation_tenant_keys_remaining',
    kind: 'gauge',
    description: 'Tenant keys still wrapped by an older KEK version after the latest re-wrap pass',
  },
  /** outcome: completed. */
  rotationRuns: { name: 'anc_rotation_runs', kind: 'counter', description: 'Rotations finished' },
  kekDaysToExpiry: {
    name: 'anc_kek_days_to_expiry',
    kind: 'gauge',
    description: 'Days until the current KEK version expires (renewal is due at 90)',
  },
  purges: { name: 'anc_tenant_purges', kind: 'counter', description: 'Tenants purged after their retention window' },
  tenantsInRetention: {
    name: 'anc_tenants_in_retention',
    kind: 'gauge',
    description: 'Deactivated tenants inside their retention window',
  },
} as const;

export type MetricKey = keyof typeof METRICS;

/** The names as Prometheus shows them (what dashboards and alert rules may refer to). */
export function exportedMetricNames(): string[] {
  const names: string[] = [];
  for (const m of Object.values(METRICS)) {
    if (m.kind === 'counter') names.push(`${m.name}_total`);
    else if (m.kind === 'histogram') names.push(`${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`);
    else names.push(m.name);
  }
  return names;
}

export function addCounter(meter: MetricMeter, key: MetricKey, value: number, tags: MetricTags = {}): void {
  if (value <= 0) return;
  const m = METRICS[key];
  meter.createCounter(m.name, undefined, m.description).add(value, tags);
}

export function setGauge(meter: MetricMeter, key: MetricKey, value: number, tags: MetricTags = {}): void {
  const m = METRICS[key];
  meter.createGauge(m.name, 'float', undefined, m.description).set(value, tags);
}

export function recordHistogram(meter: MetricMeter, key: MetricKey, value: number, tags: MetricTags = {}): void {
  const m = METRICS[key];
  meter.createHistogram(m.name, 'float', 'unit' in m ? m.unit : undefined, m.description).record(value, tags);
}

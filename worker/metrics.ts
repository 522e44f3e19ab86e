import { METRICS } from '../common/metrics';

/** Key Vault latency buckets, in milliseconds: an HSM unwrap takes tens of ms, SDK back-off seconds. */
const KEYVAULT_LATENCY_BUCKETS_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000];

/**
 * The Prometheus exporter settings for `Runtime.install({ telemetryOptions: { metrics } })`: the
 * SDK's runtime metrics and the service's own (common/metrics.ts) on one `/metrics` endpoint.
 * Counters carry the conventional `_total` suffix the dashboards and alert rules use.
 */
export function prometheusMetricsOptions(bindAddress: string) {
  return {
    prometheus: {
      bindAddress,
      countersTotalSuffix: true,
      histogramBucketOverrides: { [METRICS.keyVaultLatency.name]: KEYVAULT_LATENCY_BUCKETS_MS },
    },
  };
}

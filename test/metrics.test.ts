import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealPasswordEnvelope } from '../client/envelope';
import { ancWorkflowId } from '../common/ids';
import { exportedMetricNames } from '../common/metrics';
import { updateAncPasswordUpdate } from '../workflows/definitions';
import type { RotationProgress } from '../workflows/rotation-definitions';
import { prometheusMetricsOptions } from '../worker/metrics';
import { canaryForms, findCanary } from './support/canary';
import { startEmulatorProcess, azureEmulatorKek, type EmulatorProcess } from './support/emulator-process';
import { SDK_METRICS_USED } from './support/deploy';
import { DIRECTORY_PASSWORD, DIRECTORY_USER } from './support/fixtures';
import { createHarness, startDevServer, type Harness } from './support/harness';
import { freePort } from './support/worker-process';
import { parsePrometheus, scrape, total, type Sample } from './support/prometheus';
import { ROOT } from './support/stack';

// This file runs in its own process (vitest forks): the Runtime here is this process's, with the
// SDK's Prometheus exporter on a free port, as the worker installs it on METRICS_PORT.
const metricsPort = await freePort();
Runtime.install({
  logger: new DefaultLogger('ERROR'),
  telemetryOptions: { metrics: prometheusMetricsOptions(`127.0.0.1:${metricsPort}`) },
});

async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('Prometheus metrics: the SDK runtime and the service on one endpoint', () => {
  let env: TestWorkflowEnvironment;
  let emulator: EmulatorProcess;
  let h: Harness;

  beforeAll(async () => {
    emulator = await startEmulatorProcess();
    env = await startDevServer();
    // A retention window of three seconds, so a purge happens within the test.
    h = await createHarness({ env, kek: azureEmulatorKek(emulator), config: { tenantRetentionMs: 3000 } });
    await h.startWorker();
    await h.sdk.publicKek(); // the keyring has published the KEK (and its days-to-expiry gauge)
  });

  afterAll(async () => {
    await h?.close();
    await env?.teardown();
    await emulator?.stop();
  });

  it('counters move by exactly what a create, an update, failed health checks and a rotation did', async () => {
    const tenantId = `metrics-${randomBytes(4).toString('hex')}`;
    const wrongPassword = `Wrong-${randomBytes(12).toString('hex')}`;
    const actor = 'ops@contoso.test';
    const spec = { displayName: 'Contoso HQ', adDomainName: 'corp.contoso.test', adDomainUsername: DIRECTORY_USER };
    const health = (status: string) =>
      eventually(
        () => h.sdk.getAnc(tenantId, 'hq'),
        (v) => v.healthCheck.status === status,
        `health ${status}`,
      );

    const before = parsePrometheus(await scrape(metricsPort));
    const vaultBefore = await emulator.stats();

    // Create with the directory's password: the check after it passes.
    await h.sdk.createAnc({ tenantId, ancId: 'hq', ...spec, password: DIRECTORY_PASSWORD, actor });
    await health('passed');
    // Update to a password the directory refuses: the check after it fails.
    await h.sdk.updateAncPassword(tenantId, 'hq', wrongPassword, { actor });
    await health('failed');
    // An envelope sealed for another ANC is refused (InvalidEnvelope) and seals nothing.
    const foreign = await sealPasswordEnvelope({
      password: wrongPassword,
      kek: await h.sdk.publicKek(),
      tenantId,
      ancId: 'other',
      op: 'update',
    });
    await expect(
      env.client.workflow
        .getHandle(ancWorkflowId(tenantId, 'hq'))
        .executeUpdate(updateAncPasswordUpdate, { args: [{ actor, passwordEnvelope: foreign }] }),
    ).rejects.toThrow();
    // Key Vault throttles the next request once (Retry-After: 0): the SDK retries it.
    await emulator.faults(1, 429, 0);
    const rerun = await h.sdk.runHealthChecks(tenantId, 'hq', { actor });
    expect(rerun.errorType).toBe('IncorrectCredentials');

    // A rotation after a new KEK version (valid 200 days): the tenant key is re-wrapped.
    await h.deps.kek.provider.createVersion(new Date(Date.now() + 200 * 86_400_000));
    h.deps.kek.invalidate();
    const rotation = await env.client.workflow.execute('rotationWorkflow', {
      taskQueue: h.taskQueue,
      workflowId: `rotation-${tenantId}`,
      args: [{ kekGraceSeconds: 0 }],
    });
    const progress = rotation as RotationProgress;
    expect(progress.counts.rewrapped).toBe(1);

    // Deactivate the tenant: it is in its retention window until the purge three seconds later.
    await h.sdk.deactivateTenant(tenantId, { actor });
    const inRetention = parsePrometheus(await scrape(metricsPort));
    expect(total(inRetention, 'anc_tenants_in_retention')).toBe(1);
    await eventually(
      async () => (await h.sdk.getTenant(tenantId)).state,
      (s) => s === 'purged',
      'the purge',
    );

    // Workflow metrics reach the exporter when their workflow task completes: wait for the last.
    const after = await eventually(
      async () => parsePrometheus(await scrape(metricsPort)),
      (s) => total(s, 'anc_tenant_purges_total') - total(before, 'anc_tenant_purges_total') === 1,
      'the purge to be counted',
    );
    const vaultAfter = await emulator.stats();
    const delta = (name: string, match: Record<string, string> = {}) =>
      total(after, name, match) - total(before, name, match);

    expect(delta('anc_credential_seals_total', { operation: 'create' })).toBe(1);
    expect(delta('anc_credential_seals_total', { operation: 'update' })).toBe(1);
    expect(delta('anc_credential_seals_total')).toBe(2); // nothing re-sealed: no tenant key expired
    expect(delta('anc_credential_opens_total', { purpose: 'health_check' })).toBe(3);
    expect(delta('anc_health_checks_total', { status: 'passed', error_type: 'none' })).toBe(1);
    expect(delta('anc_health_checks_total', { status: 'failed', error_type: 'IncorrectCredentials' })).toBe(2);
    expect(delta('anc_health_checks_total')).toBe(3);
    expect(delta('anc_envelope_rejections_total', { reason: 'InvalidEnvelope' })).toBe(1);
    expect(delta('anc_envelope_rejections_total')).toBe(1);
    expect(delta('anc_keyvault_throttled_total')).toBe(1);
    expect(delta('anc_keyvault_retries_total')).toBe(1);
    // Every unwrap the emulator answered, less the throttled attempt, is one counted call.
    const unwrapsServed = (vaultAfter.operations.unwrapkey ?? 0) - (vaultBefore.operations.unwrapkey ?? 0);
    expect(unwrapsServed).toBeGreaterThanOrEqual(5);
    expect(delta('anc_keyvault_requests_total', { operation: 'unwrap_key', outcome: 'success' })).toBe(
      unwrapsServed - 1,
    );
    expect(delta('anc_keyvault_requests_total', { operation: 'unwrap_key' })).toBe(unwrapsServed - 1);
    expect(delta('anc_keyvault_request_duration_count', { operation: 'unwrap_key' })).toBe(unwrapsServed - 1);
    expect(delta('anc_rotation_tenant_keys_rewrapped_total')).toBe(1);
    expect(delta('anc_rotation_tenant_keys_replaced_total')).toBe(0);
    expect(delta('anc_rotation_failures_total')).toBe(0);
    expect(delta('anc_rotation_runs_total', { outcome: 'completed' })).toBe(1);
    expect(total(after, 'anc_rotation_tenant_keys_remaining')).toBe(0);
    expect(delta('anc_tenant_purges_total')).toBe(1);
    expect(total(after, 'anc_tenants_in_retention')).toBe(0);
    // The rotation signalled the keyring, which now reports the new version's 200 days.
    const days = await eventually(
      async () => total(parsePrometheus(await scrape(metricsPort)), 'anc_kek_days_to_expiry'),
      (d) => d > 199 && d <= 200,
      'the new KEK version in the expiry gauge',
    );
    expect(days).toBeGreaterThan(199);

    // Nothing in the scrape is a password, or derived from one.
    expect(findCanary(await scrape(metricsPort), canaryForms(wrongPassword))).toEqual([]);
    // The SDK's own runtime metrics are on the same endpoint.
    expect(after.some((s) => s.name.startsWith('temporal_'))).toBe(true);
  });

  it('exports every metric the service defines, with no id or secret in a label', async () => {
    const text = await scrape(metricsPort);
    mkdirSync(`${ROOT}test-artifacts`, { recursive: true });
    writeFileSync(`${ROOT}test-artifacts/metrics.txt`, text); // what an operator's Prometheus scrapes
    const samples = parsePrometheus(text);
    const names = new Set(samples.map((s: Sample) => s.name));
    // Everything the first test exercised; failures and replacements have not happened (zero is
    // not exported for a counter nobody added to).
    const notYet = new Set(['anc_rotation_tenant_keys_replaced_total', 'anc_rotation_failures_total']);
    for (const name of exportedMetricNames().filter((n) => !notYet.has(n))) expect(names, name).toContain(name);

    // The SDK metrics the dashboard uses are on the live endpoint too.
    for (const name of SDK_METRICS_USED) expect(names, name).toContain(name);

    const serviceSamples = samples.filter((s) => s.name.startsWith('anc_'));
    const labelNames = new Set(serviceSamples.flatMap((s) => Object.keys(s.labels)));
    for (const forbidden of ['tenant_id', 'tenantId', 'anc_id', 'ancId', 'workflow_id', 'run_id']) {
      expect(labelNames).not.toContain(forbidden);
    }
    const labelValues = serviceSamples.flatMap((s) => Object.values(s.labels)).join('\n');
    expect(labelValues).not.toMatch(/metrics-[0-9a-f]{8}/);
    expect(text).not.toMatch(/metrics-[0-9a-f]{8}/);
    expect(findCanary(text, canaryForms(DIRECTORY_PASSWORD))).toEqual([]);
  });
});

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rendezvousVault } from '../client/placement';
import { AncClient } from '../client/sdk';
import { createTestDatabase, type TestDatabase } from './support/db';
import { startEmulatorProcess, type EmulatorProcess } from './support/emulator-process';
import { startDevServer } from './support/harness';
import { ROOT, stackKekTrust } from './support/stack';
import { freePort, startWorkerProcess, workerEnv, type WorkerProcess } from './support/worker-process';

/** The first tenant id of the form `<prefix>-<n>` that the placement rule puts on `vaultId`. */
function tenantOn(vaultId: string, vaultIds: string[], prefix: string): string {
  for (let n = 0; ; n++) if (rendezvousVault(`${prefix}-${n}`, vaultIds) === vaultId) return `${prefix}-${n}`;
}

/**
 * The compiled worker (`node dist/worker/main.js`) configured with two vaults (KEYVAULT_VAULTS), each
 * a Key Vault emulator of this file's own, so each vault's request counts are exact. Both emulators'
 * KEK certificates come from the stack's test CA, which the SDK trusts.
 */
describe('the worker process with two vaults', () => {
  const vaultIds = ['primary', 'eu2'];
  let env: TestWorkflowEnvironment;
  let db: TestDatabase;
  let vaults: { primary: EmulatorProcess; eu2: EmulatorProcess };
  let worker: WorkerProcess;
  let healthPort: number;
  let metricsPort: number;
  let caDir: string;
  const taskQueue = `tq-${randomBytes(6).toString('hex')}`;

  beforeAll(async () => {
    const testCa = {
      certPath: join(ROOT, '.stack/keyvault/kek-ca.pem'),
      keyPath: join(ROOT, '.stack/keyvault/kek-ca-key.pem'),
    };
    const [primary, eu2] = await Promise.all([startEmulatorProcess({ testCa }), startEmulatorProcess({ testCa })]);
    vaults = { primary, eu2 };
    env = await startDevServer();
    db = await createTestDatabase();
    healthPort = await freePort();
    metricsPort = await freePort();
    // KEYVAULT_CA may hold several certificates: here each emulator's own TLS certificate.
    caDir = mkdtempSync(join(tmpdir(), 'anc-vaults-ca-'));
    const caBundle = join(caDir, 'ca.pem');
    writeFileSync(caBundle, `${vaults.primary.caPem.trim()}\n${vaults.eu2.caPem.trim()}\n`);
    worker = startWorkerProcess(
      join(ROOT, 'dist/worker/main.js'),
      {
        ...workerEnv({ databaseUrl: db.url, temporalAddress: env.address, taskQueue }),
        KEYVAULT_URL: vaults.primary.url,
        KEYVAULT_VAULTS: `primary=${vaults.primary.url},eu2=${vaults.eu2.url}`,
        KEYVAULT_CA: caBundle,
        HEALTH_PORT: String(healthPort),
        METRICS_PORT: String(metricsPort),
        SHUTDOWN_GRACE_SECONDS: '5',
      },
      ROOT,
    );
    await worker.waitForMessage('Worker started');
  });

  afterAll(async () => {
    await worker?.stop();
    await Promise.all(Object.values(vaults ?? {}).map((v) => v.stop()));
    await db?.drop();
    await env?.teardown();
    if (caDir) rmSync(caDir, { recursive: true, force: true });
  });

  const unwraps = async (): Promise<Record<string, number>> => ({
    primary: (await vaults.primary.stats()).operations.unwrapkey,
    eu2: (await vaults.eu2.stats()).operations.unwrapkey,
  });

  /** Waits until neither emulator has seen a request for a while (the follow-up health check included). */
  const settled = async (): Promise<Record<string, number>> => {
    const total = async () => (await vaults.primary.stats()).totalRequests + (await vaults.eu2.stats()).totalRequests;
    let last = await total();
    for (let quiet = 0; quiet < 4;) {
      await new Promise((r) => setTimeout(r, 250));
      const now = await total();
      quiet = now === last ? quiet + 1 : 0;
      last = now;
    }
    return unwraps();
  };

  it('serves a tenant on each vault, each vault unwrapping at its own Key Vault only', async () => {
    const sdk = new AncClient({ client: env.client, taskQueue, kekTrust: stackKekTrust() });
    const ring = await sdk.vaultKeks();
    expect(ring.vaults.map((v) => v.vaultId)).toEqual(vaultIds);
    expect(ring.openVaultIds).toEqual(vaultIds);
    expect(ring.vaults[0]?.kek.version).not.toBe(ring.vaults[1]?.kek.version);

    for (const vaultId of vaultIds) {
      const tenantId = tenantOn(vaultId, vaultIds, 'proc');
      const before = await settled();
      const view = await sdk.createAnc({
        tenantId,
        ancId: 'hq',
        displayName: 'HQ',
        adDomainName: 'corp.contoso.test',
        adDomainUsername: 'svcDomainJoin@corp.contoso.test',
        password: 'Vaults-process-Pa55!',
        actor: 'tester',
      });
      expect(view, tenantId).toMatchObject({ state: 'active', credentialVersion: 1, vaultId });
      const stored = await sdk.updateAncPassword(tenantId, 'hq', 'Vaults-process-Pa55!2', { actor: 'tester' });
      expect(stored, tenantId).toMatchObject({ credentialVersion: 2, vaultId });
      const after = await settled();
      const other = vaultIds.find((id) => id !== vaultId) as string;
      // The create's and the update's envelopes, at least, were unwrapped by this tenant's vault.
      expect((after[vaultId] ?? 0) - (before[vaultId] ?? 0), `${tenantId} at ${vaultId}`).toBeGreaterThanOrEqual(2);
      expect((after[other] ?? 0) - (before[other] ?? 0), `${tenantId} at ${other}`).toBe(0);
    }

    const health = await fetch(`http://127.0.0.1:${healthPort}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ ok: true, checks: { worker: { ok: true } } });

    // Key Vault calls are labelled by vault, the KEK's days to expiry is one series per vault.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    for (const vaultId of vaultIds) {
      expect(metrics).toMatch(
        new RegExp(
          `^anc_keyvault_requests_total\\{[^}]*operation="unwrap_key"[^}]*vault="${vaultId}"[^}]*\\} \\d+$`,
          'm',
        ),
      );
      expect(metrics).toMatch(new RegExp(`^anc_kek_days_to_expiry\\{[^}]*vault="${vaultId}"[^}]*\\} 3\\d\\d`, 'm'));
    }
  });

  it('rotates each vault: a run for the first and a child run for eu2, each calling its own vault', async () => {
    const sdk = new AncClient({ client: env.client, taskQueue, kekTrust: stackKekTrust() });
    const before = {
      primary: (await vaults.primary.stats()).totalRequests,
      eu2: (await vaults.eu2.stats()).totalRequests,
    };
    const triggered = await sdk.triggerRotation();
    const rotationId = triggered.workflowId;
    expect(triggered.started).toBe(true);
    expect(rotationId).toBeDefined();
    await env.client.workflow.getHandle(rotationId as string).result();
    const child = await env.client.workflow.getHandle(`${rotationId}/vault-eu2`).describe();
    expect(child.status.name).toBe('COMPLETED');
    expect((await vaults.primary.stats()).totalRequests).toBeGreaterThan(before.primary);
    expect((await vaults.eu2.stats()).totalRequests).toBeGreaterThan(before.eu2);
  });

  it('stops every worker on SIGTERM and exits 0', async () => {
    const started = Date.now();
    expect(await worker.stop()).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    const lines = worker.stdout().trimEnd().split('\n');
    const stopped = (queue: string) =>
      lines.some((l) => l.includes(`"taskQueue":"${queue}"`) && l.includes('"state":"STOPPED"'));
    for (const queue of [taskQueue, `${taskQueue}-hsm`, `${taskQueue}-hsm-eu2`])
      expect(stopped(queue), queue).toBe(true);
    expect(lines.some((l) => l.includes('"msg":"Worker stopped"'))).toBe(true);
    expect(worker.stderr()).toBe('');
  });
});

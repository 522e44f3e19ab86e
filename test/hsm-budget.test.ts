import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AncClient } from '../client/sdk';
import { ancWorkflowId } from '../common/ids';
import { wrapWithPublicKey, type KekVersion } from '../activities/kek/provider';
import { startSingletons } from '../worker/singletons';
import type { RotationProgress, RotationWorkflowArgs } from '../workflows/rotation-definitions';
import { createTestDatabase, type TestDatabase } from './support/db';
import { azureEmulatorKek, startEmulatorProcess, type EmulatorProcess } from './support/emulator-process';
import { startDevServer } from './support/harness';
import { ROOT, stackEnv } from './support/stack';

const DAY = 86_400_000;
/** The vault budget the test holds the fleet to: HSM calls in any one second. */
const BUDGET = 20;
/** The HSM queue's rate: 0.4 of the budget (Temporal's bucket bursts about its rate on top). */
const QUEUE_RATE = Math.floor(BUDGET * 0.4);

const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  organizationalUnit: 'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};

/** The largest number of instants in any window [t, t + 1000). */
function busiestSecond(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let j = 0;
  for (let i = 0; i < sorted.length; i++) {
    while (j < sorted.length && sorted[j]! < sorted[i]! + 1000) j++;
    best = Math.max(best, j - i);
  }
  return best;
}

/** proto3-style JSON of a history (bytes as base64, enums by name), as saved for replay tests. */
function historyAsJson(history: temporal.api.history.v1.IHistory): string {
  const message = temporal.api.history.v1.History.fromObject(history);
  return JSON.stringify(
    temporal.api.history.v1.History.toObject(message, { longs: String, enums: String, bytes: String }),
  );
}

/**
 * Saves histories of the HSM-queue paths for the replay test: an ANC created, updated, checked on
 * demand and deleted (credential and checks on the HSM queue, periodic slots), and a rotation that
 * re-wrapped key by key on the HSM queue.
 */
async function recordHistories(sdk: AncClient, env: TestWorkflowEnvironment, rotationId: string): Promise<void> {
  await sdk.updateAncPassword('burst-0', 'anc-0', 'Burst#Pass-0b', { actor: 'test' });
  await sdk.runHealthChecks('burst-0', 'anc-0', { actor: 'test' });
  await sdk.deleteAnc('burst-0', 'anc-0', { actor: 'test' });
  const anc = env.client.workflow.getHandle(ancWorkflowId('burst-0', 'anc-0'));
  await anc.result();
  mkdirSync(`${ROOT}test/histories`, { recursive: true });
  writeFileSync(`${ROOT}test/histories/anc-hsm-queue.json`, historyAsJson(await anc.fetchHistory()));
  const rotation = env.client.workflow.getHandle(rotationId);
  writeFileSync(`${ROOT}test/histories/rotation-hsm-queue.json`, historyAsJson(await rotation.fetchHistory()));
}

interface WorkerProcess {
  child: ChildProcess;
  /** Resolves with the counts it prints when it stops. */
  stop(): Promise<{ kek: { remoteUnwraps: number }; cache: { hits: number; misses: number } }>;
}

async function startWorkerProcess(env: NodeJS.ProcessEnv): Promise<WorkerProcess> {
  const child = spawn(join(ROOT, 'node_modules', '.bin', 'tsx'), [join(ROOT, 'test/support/service-worker.ts')], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (out.includes('ready\n')) {
        clearInterval(timer);
        resolve();
      }
    }, 50);
    void exited.then((code) => {
      clearInterval(timer);
      reject(new Error(`worker process exited (${code}) before it was ready: ${err}`));
    });
  });
  return {
    child,
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) throw new Error(`worker process exited with ${code}: ${err}`);
      const line = out.trim().split('\n').at(-1) ?? '{}';
      return JSON.parse(line);
    },
  };
}

/**
 * One HSM budget for the fleet: two worker processes (each as the service runs, main + HSM worker,
 * each with a per-process limit far above the budget), a Temporal dev server enforcing the HSM
 * queue's rate, and the Key Vault emulator timestamping every unwrap it serves.
 */
describe('one HSM budget for the whole fleet (dev server, two worker processes, Key Vault emulator)', () => {
  let env: TestWorkflowEnvironment;
  let kv: EmulatorProcess;
  let db: TestDatabase;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    [env, kv, db] = await Promise.all([startDevServer(), startEmulatorProcess(), createTestDatabase('hsm')]);
  });
  afterAll(async () => {
    for (const w of workers) await w.stop().catch(() => undefined);
    await db?.drop();
    await kv?.stop();
    await env?.teardown();
  });

  it(
    'never more than the budget in any second at the vault, during a rotation and a burst of creates',
    { timeout: 400_000 },
    async () => {
      const keyName = `fleet-${randomBytes(4).toString('hex')}`;
      const kek = azureEmulatorKek({ url: kv.url, caPem: kv.caPem }, { keyName, hsmOpsPerSecond: 50 });
      const old: KekVersion = await kek.createVersion(new Date(Date.now() + 200 * DAY));
      // 60 tenants whose keys are wrapped by the old version: the rotation re-wraps each (one unwrap).
      const ids = Array.from({ length: 60 }, (_, i) => `stale-${String(i).padStart(3, '0')}`);
      const wrapped = ids.map(() => wrapWithPublicKey(old.publicJwk, randomBytes(32)));
      await db.pool.query('INSERT INTO tenants (tenant_id) SELECT unnest($1::text[])', [ids]);
      await db.pool.query(
        `INSERT INTO tenant_keys (tenant_id, version, state, wrapped_key, kek_id, kek_version, created_at, expires_at)
       SELECT t, 1, 'active', w, $3, $4, now(), now() + interval '300 days' FROM unnest($1::text[], $2::bytea[]) AS u(t, w)`,
        [ids, wrapped, old.kekId, old.version],
      );
      await kek.createVersion(new Date(Date.now() + 365 * DAY)); // the new current version

      const caDir = mkdtempSync(join(tmpdir(), 'hsm-budget-'));
      writeFileSync(join(caDir, 'ca.pem'), kv.caPem);
      const taskQueue = `fleet-${randomBytes(4).toString('hex')}`;
      const workerEnv = {
        DATABASE_URL: db.url,
        TEMPORAL_ADDRESS: env.address,
        TEMPORAL_TASK_QUEUE: taskQueue,
        KEYVAULT_URL: kv.url,
        KEYVAULT_KEY_NAME: keyName,
        KEYVAULT_KEY_SIZE: '2048',
        KEYVAULT_EMULATOR: 'true',
        // The test made a bare key version above: the KEK is a key, not a certificate.
        KEYVAULT_KEK_MODE: 'key',
        KEYVAULT_CA: join(caDir, 'ca.pem'),
        // Each process alone may send 50 a second: only the fleet-wide queue rate holds them to the budget.
        KEYVAULT_HSM_OPS_PER_SECOND: '50',
        HSM_QUEUE_ACTIVITIES_PER_SECOND: String(QUEUE_RATE),
        LDAP_URL: stackEnv().LDAP_URL ?? 'ldap://127.0.0.1:1',
        DNS_OVERRIDES: 'corp.contoso.test=127.0.0.1',
        LOG_LEVEL: 'warn',
      };
      workers.push(await startWorkerProcess(workerEnv), await startWorkerProcess(workerEnv));
      await startSingletons(env.client, taskQueue);
      // Key mode without pins: this test is about the budget, not the client's trust.
      const sdk = new AncClient({
        client: env.client,
        taskQueue,
        healthCheckIntervalMinutes: 24 * 60,
        kekTrust: { unverified: true },
      });
      // The keyring publishes the KEK; the first create waits for it.
      await sdk.createAnc({ tenantId: 'warm-up', ancId: 'anc-0', ...spec, password: 'Warm#Up-Pass1', actor: 'test' });
      await kv.reset();

      const started = Date.now();
      const rotation = env.client.workflow.execute('rotationWorkflow', {
        taskQueue,
        workflowId: `rotation-${taskQueue}`,
        args: [{ batchSize: 30, concurrency: 16, kekGraceSeconds: 0 } satisfies RotationWorkflowArgs],
      }) as Promise<RotationProgress>;
      // A burst of creates from several callers: new tenants and tenants whose key the rotation is
      // re-wrapping at the same time.
      const creates = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          sdk.createAnc({
            tenantId: i % 2 === 0 ? `burst-${i}` : ids[i]!,
            ancId: `anc-${i}`,
            ...spec,
            password: `Burst#Pass-${i}`,
            actor: 'test',
          }),
        ),
      );
      const result = await rotation;
      const elapsed = Date.now() - started;
      const stats = await kv.stats();
      if (process.env.RECORD_HISTORIES) await recordHistories(sdk, env, `rotation-${taskQueue}`);
      const counts = await Promise.all(workers.splice(0).map((w) => w.stop()));

      expect(creates.every((v) => v.state === 'active')).toBe(true);
      expect(result.phase).toBe('done');
      expect(result.counts.rewrapped).toBe(60);
      const unwraps = stats.cryptoTimestamps.unwrapkey;
      // 60 re-wraps, 30 envelopes, and the tenant keys of the creates for existing tenants (unless a
      // process had it cached): the vault really was busy.
      expect(unwraps.length).toBeGreaterThanOrEqual(90);
      const peak = busiestSecond(unwraps);
      console.log(
        `fleet HSM budget: ${unwraps.length} unwraps in ${(elapsed / 1000).toFixed(1)} s from two processes ` +
          `(${counts.map((c) => c.kek.remoteUnwraps).join(' + ')}), busiest second ${peak} (budget ${BUDGET}, queue rate ${QUEUE_RATE}/s)`,
      );
      expect(peak).toBeLessThanOrEqual(BUDGET);
      // Both processes did HSM work: the limit held across them, not inside one.
      for (const c of counts) expect(c.kek.remoteUnwraps).toBeGreaterThan(10);
      // And it was the limit that paced them: 50 a second each would have finished far sooner.
      expect(elapsed).toBeGreaterThan(((unwraps.length / BUDGET) * 1000) / 2);
    },
  );
});

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type Activities } from '../../activities';
import type { ActivityDeps } from '../../activities/deps';
import type { AzureKeyVaultKekProvider } from '../../activities/kek/azure-key-vault';
import { KekDirectory } from '../../activities/kek/directory';
import { VaultSet, type Vault } from '../../activities/kek/vaults';
import { LocalDevKekProvider } from '../../activities/kek/local-dev';
import type { KekProvider } from '../../activities/kek/provider';
import { AncClient, type KekTrust } from '../../client/sdk';
import { hsmTaskQueue } from '../../common/hsm';
import {
  AncIdKey,
  AncStateKey,
  HealthStatusKey,
  PurgeAtKey,
  TenantIdKey,
  TenantStateKey,
} from '../../common/search-attributes';
import { createLogger } from '../../worker/logger';
import { splitActivities } from '../../worker/workers';
import { startSingletons } from '../../worker/singletons';
import { WORKFLOWS_PATH } from '../../worker/workflows-path';
import { createTestDatabase, type TestDatabase } from './db';
import { azureEmulatorKek } from './emulator-process';
import { quietTemporalCli, stackEnv } from './stack';

export const ALL_SEARCH_ATTRIBUTES = [TenantIdKey, AncIdKey, AncStateKey, HealthStatusKey, TenantStateKey, PurgeAtKey];

/** A Temporal dev server (the real `temporal` CLI from .tools), with the service's search attributes. */
export async function startDevServer(): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: quietTemporalCli() },
      ip: '127.0.0.1',
      ui: false,
      searchAttributes: ALL_SEARCH_ATTRIBUTES,
      extraArgs: ['--log-level', 'error'],
    },
  });
}

/** The time-skipping test server (the real `temporal-test-server` from .tools). */
export async function startTimeSkippingServer(): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: stackEnv().TEMPORAL_TEST_SERVER } },
  });
}

export function localKek(): KekProvider {
  return new LocalDevKekProvider(mkdtempSync(join(tmpdir(), 'anc-kek-')), 2048);
}

/** A KEK provider talking to the Key Vault emulator over HTTPS, with a fresh key name per call. */
export function emulatorKek(opts: { keyName?: string; hsmOpsPerSecond?: number } = {}): AzureKeyVaultKekProvider {
  const env = stackEnv();
  return azureEmulatorKek({ url: env.KEYVAULT_URL, caPem: readFileSync(env.KEYVAULT_CA, 'utf8') }, opts);
}

/** Captures every log line the activities write, to search for secrets. */
export class LogSink extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.lines.push(chunk.toString('utf8'));
    done();
  }
  text(): string {
    return this.lines.join('');
  }
}

export interface Harness {
  env: TestWorkflowEnvironment;
  db: TestDatabase;
  deps: ActivityDeps;
  logs: LogSink;
  taskQueue: string;
  sdk: AncClient;
  /** Starts a worker (the test owns its lifetime). */
  /**
   * Starts the process's two workers, as the service does: the main one (workflows and database
   * activities) and the HSM one (Key Vault-bound activities). `options` go to the main one,
   * `hsmOptions` to the HSM one. The test owns their lifetime.
   */
  startWorker(overrides?: {
    activities?: Partial<Activities>;
    options?: Partial<WorkerOptions>;
    hsmOptions?: Partial<WorkerOptions>;
  }): Promise<RunningWorker>;
  close(): Promise<void>;
}

export interface RunningWorker {
  /** The main worker (workflows). */
  worker: Worker;
  /** The HSM task queue's worker. */
  hsmWorker: Worker;
  stop(): Promise<void>;
}

export async function createHarness(opts: {
  env: TestWorkflowEnvironment;
  kek?: KekProvider;
  config?: Partial<ActivityDeps['config']>;
  healthCheckIntervalMinutes?: number;
  startSingletons?: boolean;
  /** How the harness's SDK verifies the published key; default unverified (the local KEK has no certificate). */
  kekTrust?: KekTrust;
  /** A database of the test's own (default: a fresh one on the stack's PostgreSQL). */
  db?: TestDatabase;
  /** Further vaults besides `kek` (which is "primary"), each with an HSM worker of its own. */
  vaults?: Array<{ id: string; kek: KekProvider }>;
  /** Vaults closed to new tenants. */
  closedVaults?: string[];
}): Promise<Harness> {
  const db = opts.db ?? (await createTestDatabase());
  const logs = new LogSink();
  const kek = new KekDirectory(opts.kek ?? localKek(), 0);
  await kek.bootstrap(new Date());
  const others: Vault[] = [];
  for (const v of opts.vaults ?? []) {
    const directory = new KekDirectory(v.kek, 0, v.id);
    await directory.bootstrap(new Date());
    others.push({ id: v.id, kek: directory });
  }
  const deps: ActivityDeps = {
    pool: db.pool,
    kek,
    ...(others.length > 0 ? { vaults: new VaultSet([{ id: 'primary', kek }, ...others], opts.closedVaults) } : {}),
    logger: createLogger('debug', logs),
    config: {
      auditMacKey: Buffer.alloc(32, 7),
      maxAncsPerTenant: 10,
      envelopeMaxAgeSeconds: 300,
      tenantRetentionMs: 29 * 24 * 3600 * 1000,
      disableUnreferencedKekVersions: false,
      ldap: {
        urlTemplate: stackEnv().LDAP_URL ?? 'ldap://127.0.0.1:1',
        startTls: false,
        timeoutMs: 2000,
        dnsOverrides: { 'corp.contoso.test': '127.0.0.1' },
        upnBind: 'auto',
        passwordExpiryWarningDays: 14,
      },
      ...opts.config,
    },
  };
  const taskQueue = `tq-${randomBytes(6).toString('hex')}`;
  const workers: RunningWorker[] = [];
  const harness: Harness = {
    env: opts.env,
    db,
    deps,
    logs,
    taskQueue,
    sdk: new AncClient({
      client: opts.env.client,
      taskQueue,
      healthCheckIntervalMinutes: opts.healthCheckIntervalMinutes,
      kekTrust: opts.kekTrust ?? { unverified: true },
    }),
    async startWorker(overrides = {}) {
      const { hsm, main } = splitActivities({ ...createActivities(deps), ...overrides.activities });
      const worker = await Worker.create({
        connection: opts.env.nativeConnection,
        namespace: opts.env.namespace ?? 'default',
        taskQueue,
        workflowsPath: WORKFLOWS_PATH,
        activities: main,
        ...overrides.options,
      });
      const hsmWorker = await Worker.create({
        connection: opts.env.nativeConnection,
        namespace: opts.env.namespace ?? 'default',
        taskQueue: hsmTaskQueue(taskQueue),
        activities: hsm,
        ...overrides.hsmOptions,
      });
      // Each further vault: the same activities with its KEK, on its own HSM queue.
      const vaultWorkers: Worker[] = [];
      for (const vault of others) {
        const own = createActivities({ ...deps, kek: vault.kek, vaultId: vault.id });
        vaultWorkers.push(
          await Worker.create({
            connection: opts.env.nativeConnection,
            namespace: opts.env.namespace ?? 'default',
            taskQueue: hsmTaskQueue(taskQueue, vault.id),
            activities: splitActivities({ ...own, ...overrides.activities }).hsm,
            ...overrides.hsmOptions,
          }),
        );
      }
      const everyWorker = [worker, hsmWorker, ...vaultWorkers];
      const stopBoth = () => {
        for (const w of everyWorker) if (w.getState() === 'RUNNING') w.shutdown();
      };
      // When one stops (a test shuts it down to simulate a crash), the others stop too.
      const running = Promise.all(everyWorker.map((w) => w.run().finally(stopBoth)));
      const handle: RunningWorker = {
        worker,
        hsmWorker,
        async stop() {
          stopBoth();
          await running;
          workers.splice(workers.indexOf(handle), 1);
        },
      };
      workers.push(handle);
      return handle;
    },
    async close() {
      for (const w of [...workers]) await w.stop();
      await db.drop();
    },
  };
  if (opts.startSingletons !== false) {
    await startSingletons(opts.env.client, taskQueue);
  }
  return harness;
}

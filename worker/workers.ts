import type { NativeConnection } from '@temporalio/worker';
import { Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type Activities } from '../activities';
import type { ActivityDeps } from '../activities/deps';
import { TenantKeyCache } from '../activities/kek/tenant-key-cache';
import { HSM_ACTIVITY_NAMES, hsmTaskQueue } from '../common/hsm';
import { PRIMARY_VAULT_ID } from '../common/vaults';
import type { Config } from './config';
import { workflowCode } from './workflows-path';

export interface CreateWorkersOptions {
  connection: NativeConnection;
  namespace: string;
  /** The service's task queue; the HSM queues are derived from it (`hsmTaskQueue`). */
  taskQueue: string;
  /**
   * `deps.kek` is the first vault's KEK; `deps.vaults`, when set, lists every vault (the first being
   * `deps.kek`), and each further vault gets an HSM worker of its own.
   */
  deps: Omit<ActivityDeps, 'tenantKeyCache' | 'vaultId'>;
  config: Pick<Config, 'hsmQueueActivitiesPerSecond' | 'tenantKeyCache'> &
    Partial<Pick<Config, 'hsmWorkerSlots'>> & { shutdownGraceSeconds?: number };
  /** Replace some activities (tests). */
  activities?: Partial<Activities>;
  /** Extra options for the main worker (tests). */
  options?: Partial<WorkerOptions>;
  /** Extra options for the HSM worker (tests). */
  hsmOptions?: Partial<WorkerOptions>;
}

/** The worker process's Temporal workers (main, and one HSM worker per vault), run and stopped together. */
export interface ServiceWorkers {
  /** Workflows and the activities that do not call the vault. */
  main: Worker;
  /** Key Vault-bound activities of the first vault, at the fleet-wide rate of its HSM task queue. */
  hsm: Worker;
  /** Every vault's HSM worker by vault id (the first vault's is `hsm`). */
  hsmByVault: Map<string, Worker>;
  cache: TenantKeyCache;
  /** Runs both until shutdown; the tenant-key cache is zeroed when they have stopped. */
  run(): Promise<void>;
  /** RUNNING while both run; otherwise the state of the one that is not running. */
  getState(): ReturnType<Worker['getState']>;
  shutdown(): void;
}

/** Splits activities by where they run: the HSM queue or the main one. */
export function splitActivities(all: Activities): { hsm: Partial<Activities>; main: Partial<Activities> } {
  const hsmNames = new Set<string>(HSM_ACTIVITY_NAMES);
  const hsm: Record<string, unknown> = {};
  const main: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(all)) (hsmNames.has(name) ? hsm : main)[name] = fn;
  return { hsm: hsm as Partial<Activities>, main: main as Partial<Activities> };
}

/**
 * Builds the process's workers: the main one (workflows, database-only activities) and the HSM one
 * on `<taskQueue>-hsm`, whose `maxTaskQueueActivitiesPerSecond` the Temporal server enforces for
 * every worker polling that queue together: one budget for the fleet, however many processes run.
 * Also builds the tenant-key cache the activities share, and zeroes it at shutdown.
 */
export async function createWorkers(opts: CreateWorkersOptions): Promise<ServiceWorkers> {
  const limits = opts.config.tenantKeyCache;
  const cache = new TenantKeyCache({
    maxEntries: limits.maxEntries,
    maxAgeMs: limits.maxAgeSeconds * 1000,
    maxUses: limits.maxUses,
  });
  const activities = { ...createActivities({ ...opts.deps, tenantKeyCache: cache }), ...opts.activities };
  const { hsm, main } = splitActivities(activities);
  // Each further vault: the same activities with that vault's KEK, on that vault's HSM queue.
  const otherVaults = (opts.deps.vaults?.list ?? []).slice(1);
  const common = {
    connection: opts.connection,
    namespace: opts.namespace,
    shutdownGraceTime: `${opts.config.shutdownGraceSeconds ?? 30} seconds`,
  };
  // HSM-bound activities in flight in this process, per vault: the most it can release at once.
  const hsmSlots = {
    maxTaskQueueActivitiesPerSecond: opts.config.hsmQueueActivitiesPerSecond,
    maxConcurrentActivityTaskExecutions:
      opts.config.hsmWorkerSlots ?? Math.max(2, Math.ceil(opts.config.hsmQueueActivitiesPerSecond / 2)),
  };
  const mainWorker = await Worker.create({
    ...common,
    taskQueue: opts.taskQueue,
    ...workflowCode(),
    activities: main,
    ...opts.options,
  });
  const hsmWorker = await Worker.create({
    ...common,
    taskQueue: hsmTaskQueue(opts.taskQueue),
    activities: hsm,
    ...hsmSlots,
    ...opts.hsmOptions,
  });
  const hsmByVault = new Map<string, Worker>([[opts.deps.vaults?.first.id ?? PRIMARY_VAULT_ID, hsmWorker]]);
  for (const vault of otherVaults) {
    const own = createActivities({ ...opts.deps, kek: vault.kek, vaultId: vault.id, tenantKeyCache: cache });
    hsmByVault.set(
      vault.id,
      await Worker.create({
        ...common,
        taskQueue: hsmTaskQueue(opts.taskQueue, vault.id),
        activities: splitActivities({ ...own, ...opts.activities }).hsm,
        // Key Vault's limits are per vault: each vault's queue has the whole per-vault rate.
        ...hsmSlots,
        ...opts.hsmOptions,
      }),
    );
  }
  const all = [mainWorker, ...hsmByVault.values()];
  return {
    main: mainWorker,
    hsm: hsmWorker,
    hsmByVault,
    cache,
    async run() {
      // Expired entries go on a timer too, not only when a lookup passes by; the counts go to the
      // runtime's metric meter (exported wherever the runtime's telemetry is configured).
      const report = cacheMetrics(cache);
      const sweeper = setInterval(
        () => {
          cache.sweep();
          report();
        },
        Math.min(limits.maxAgeSeconds * 1000, 30_000),
      );
      sweeper.unref();
      const stopAll = () => {
        for (const w of all) if (w.getState() === 'RUNNING') w.shutdown();
      };
      try {
        // When one stops (shutdown or a fatal error), stop the others as well.
        await Promise.all(all.map((w) => w.run().finally(stopAll)));
      } finally {
        clearInterval(sweeper);
        report();
        const stats = cache.stats();
        cache.clear();
        opts.deps.logger.info({ tenantKeyCache: stats }, 'workers stopped; tenant-key cache cleared');
      }
    },
    shutdown() {
      for (const w of all) if (w.getState() === 'RUNNING') w.shutdown();
    },
    getState() {
      return all.map((w) => w.getState()).find((state) => state !== 'RUNNING') ?? 'RUNNING';
    },
  };
}

/** Counters for the cache's hits, misses and evictions, and a gauge of its size. */
function cacheMetrics(cache: TenantKeyCache): () => void {
  const meter = Runtime.instance().metricMeter;
  const counters = {
    hits: meter.createCounter('anc_tenant_key_cache_hits', '1', 'Tenant keys served from the cache'),
    misses: meter.createCounter('anc_tenant_key_cache_misses', '1', 'Tenant key lookups that unwrapped'),
    evictions: meter.createCounter('anc_tenant_key_cache_evictions', '1', 'Cached tenant keys dropped and zeroed'),
  };
  const size = meter.createGauge('anc_tenant_key_cache_entries', 'int', '1', 'Tenant keys held in the cache');
  let last = { hits: 0, misses: 0, evictions: 0 };
  return () => {
    const now = cache.stats();
    for (const name of ['hits', 'misses', 'evictions'] as const) {
      if (now[name] > last[name]) counters[name].add(now[name] - last[name]);
    }
    size.set(now.entries);
    last = now;
  };
}

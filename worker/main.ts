import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime } from '@temporalio/worker';
import { migrate } from '../activities/db/migrate';
import { createPool } from '../activities/db/pool';
import { KekDirectory } from '../activities/kek/directory';
import { VaultSet } from '../activities/kek/vaults';
import { setMeterOutsideActivities } from '../activities/metrics';
import { ConfigError, loadConfig, loadLocalStackEnv } from './config';
import { startHealthServer } from './health-server';
import { createAuditAnchorSigner, createKekProvider } from './kek';
import { createLogger } from './logger';
import { ensureRotationSchedule, ensureTenantSweepSchedule, startAuditAnchor, startSingletons } from './singletons';
import { installRuntime } from './telemetry';
import { ensureSearchAttributes } from './temporal';
import { createWorkers } from './workers';

async function main(): Promise<void> {
  loadLocalStackEnv();
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  // Before any connection: the SDK's logs go through pino, its metrics to METRICS_PORT.
  installRuntime({ logger, metricsPort: config.metricsPort });
  // Key Vault calls made outside an activity (the KEK bootstrap below) are counted too.
  setMeterOutsideActivities(Runtime.instance().metricMeter);

  await migrate(config.databaseUrl);
  const pool = createPool(config.databaseUrl);
  // One KEK per vault (the first is config.kek), each bootstrapped: a first version if it has none.
  const vaults = new VaultSet(
    config.vaults.map((v) => ({ id: v.id, kek: new KekDirectory(createKekProvider(v.kek), undefined, v.id) })),
    config.vaults.filter((v) => v.closed).map((v) => v.id),
  );
  const kek = vaults.first.kek;
  for (const vault of vaults.list) {
    const current = await vault.kek.bootstrap(new Date());
    logger.info(
      {
        vaultId: vault.id,
        kekKind: vault.kek.provider.kind,
        kekVersion: current.version,
        kekExpiresAt: current.expiresAt,
      },
      'KEK ready',
    );
  }

  const { connectionOptions, namespace, taskQueue, address } = config.temporal;
  const clientConnection = await Connection.connect(connectionOptions);
  await ensureSearchAttributes(clientConnection, namespace);
  const client = new Client({ connection: clientConnection, namespace });

  const workerConnection = await NativeConnection.connect(connectionOptions);
  // The main worker and the HSM task queue's worker; SIGTERM/SIGINT (the runtime's shutdown signals)
  // stop polling, running activities get config.shutdownGraceSeconds.
  const worker = await createWorkers({
    connection: workerConnection,
    namespace,
    taskQueue,
    deps: {
      pool,
      kek,
      vaults,
      config,
      logger,
      auditAnchor: createAuditAnchorSigner(config.kek, config.auditAnchor.keyName),
    },
    config,
  });
  await startSingletons(client, taskQueue);
  await ensureRotationSchedule(client, taskQueue, config.rotationIntervalHours);
  await startAuditAnchor(client, taskQueue, config.auditAnchor.intervalMinutes);
  await ensureTenantSweepSchedule(client, taskQueue, config.tenantSweepIntervalMs);

  const health =
    config.healthPort === undefined
      ? undefined
      : await startHealthServer(config.healthPort, {
          temporal: async () => {
            await clientConnection.healthService.check({});
          },
          database: async () => {
            await pool.query('select 1');
          },
          // The main worker and every vault's HSM worker; a stopped one is named with its task queue.
          worker: async () => {
            const stopped = [worker.main, ...worker.hsmByVault.values()]
              .filter((w) => w.getState() !== 'RUNNING')
              .map((w) => `${w.options.taskQueue} is ${w.getState()}`);
            if (stopped.length > 0) throw new Error(`worker ${stopped.join(', ')}`);
          },
        });

  logger.info(
    {
      taskQueue,
      namespace,
      temporal: address,
      healthPort: config.healthPort,
      metricsPort: config.metricsPort,
    },
    'Worker started',
  );
  if (process.env.TEMPORAL_UI_URL) logger.info({ url: process.env.TEMPORAL_UI_URL }, 'Temporal Web UI');
  await worker.run();
  health?.close();
  await Promise.allSettled([pool.end(), clientConnection.close(), workerConnection.close()]);
  logger.info('Worker stopped');
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(2);
  }
  console.error('worker failed:', err instanceof Error ? err.message : err);
  process.exit(1);
});

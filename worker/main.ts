import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { migrate } from '../activities/db/migrate';
import { createPool } from '../activities/db/pool';
import { KekDirectory } from '../activities/kek/directory';
import { ConfigError, loadConfig, loadLocalStackEnv } from './config';
import { createAuditAnchorSigner, createKekProvider } from './kek';
import { createLogger } from './logger';
import { ensureRotationSchedule, startAuditAnchor, startSingletons } from './singletons';
import { ensureSearchAttributes, temporalConnectionOptions } from './temporal';
import { WORKFLOWS_PATH } from './workflows-path';

async function main(): Promise<void> {
  loadLocalStackEnv();
  const config = loadConfig();
  const logger = createLogger(config.logLevel);

  await migrate(config.databaseUrl);
  const pool = createPool(config.databaseUrl);
  const kek = new KekDirectory(createKekProvider(config.kek));
  const current = await kek.bootstrap(new Date());
  logger.info(
    { kekKind: kek.provider.kind, kekVersion: current.version, kekExpiresAt: current.expiresAt },
    'KEK ready',
  );

  const connectionOptions = temporalConnectionOptions(config.temporal);
  const clientConnection = await Connection.connect(connectionOptions);
  await ensureSearchAttributes(clientConnection, config.temporal.namespace);
  const client = new Client({ connection: clientConnection, namespace: config.temporal.namespace });

  const worker = await Worker.create({
    connection: await NativeConnection.connect(connectionOptions),
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    workflowsPath: WORKFLOWS_PATH,
    activities: createActivities({
      pool,
      kek,
      config,
      logger,
      auditAnchor: createAuditAnchorSigner(config.kek, config.auditAnchor.keyName),
    }),
    shutdownGraceTime: '30 seconds',
  });
  await startSingletons(client, config.temporal.taskQueue);
  await ensureRotationSchedule(client, config.temporal.taskQueue, config.rotationIntervalHours);
  await startAuditAnchor(client, config.temporal.taskQueue, config.auditAnchor.intervalMinutes);
  logger.info(
    { taskQueue: config.temporal.taskQueue, namespace: config.temporal.namespace, temporal: config.temporal.address },
    'Worker started',
  );
  if (process.env.TEMPORAL_UI_URL) logger.info({ url: process.env.TEMPORAL_UI_URL }, 'Temporal Web UI');
  await worker.run();
  await pool.end();
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(2);
  }
  console.error('worker failed:', err instanceof Error ? err.message : err);
  process.exit(1);
});

/**
 * One worker process as the service runs it (createWorkers: main + HSM worker, configuration from
 * the environment), for tests that need several processes polling the same task queues. Prints
 * "ready" once both workers poll, and one JSON line of counts when it stops (SIGTERM).
 */
import { NativeConnection } from '@temporalio/worker';
import { createPool } from '../../activities/db/pool';
import { KekDirectory } from '../../activities/kek/directory';
import { loadConfig } from '../../worker/config';
import { createKekProvider } from '../../worker/kek';
import { createLogger } from '../../worker/logger';
import { createWorkers } from '../../worker/workers';

async function main(): Promise<void> {
  const config = loadConfig();
  const pool = createPool(config.databaseUrl);
  const kek = new KekDirectory(createKekProvider(config.kek));
  const logger = createLogger('warn');
  const workers = await createWorkers({
    connection: await NativeConnection.connect({ address: config.temporal.address }),
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    deps: { pool, kek, config, logger },
    config,
  });
  process.once('SIGTERM', () => workers.shutdown());
  const running = workers.run();
  process.stdout.write('ready\n');
  await running;
  process.stdout.write(`${JSON.stringify({ kek: kek.provider.stats(), cache: workers.cache.stats() })}\n`);
  await pool.end();
}

main().catch((err: unknown) => {
  console.error('test worker failed:', err instanceof Error ? err.message : err);
  process.exit(1);
});

/**
 * A worker process for fault tests: the real activities and workflows, configured from one JSON
 * argument, so a test can kill -9 it and start another. Prints "worker running" once it polls.
 */
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { createPool } from '../../activities/db/pool';
import { KekDirectory } from '../../activities/kek/directory';
import { LocalDevKekProvider } from '../../activities/kek/local-dev';
import { createLogger } from '../../worker/logger';
import { createWorkers } from '../../worker/workers';

export interface FaultWorkerConfig {
  address: string;
  namespace: string;
  taskQueue: string;
  databaseUrl: string;
  kekDir: string;
  bundlePath: string;
  ldapUrl: string;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as FaultWorkerConfig;
Runtime.install({ logger: new DefaultLogger('ERROR') });
const pool = createPool(cfg.databaseUrl, 10);
// The service's two workers (main and HSM task queue), as the worker process builds them.
const worker = await createWorkers({
  connection: await NativeConnection.connect({ address: cfg.address }),
  namespace: cfg.namespace,
  taskQueue: cfg.taskQueue,
  options: { workflowBundle: { codePath: cfg.bundlePath }, workflowsPath: undefined },
  config: {
    hsmQueueActivitiesPerSecond: 100,
    tenantKeyCache: { maxEntries: 1000, maxAgeSeconds: 300, maxUses: 1000 },
  },
  deps: {
    pool,
    kek: new KekDirectory(new LocalDevKekProvider(cfg.kekDir, 2048), 0),
    logger: createLogger('error'),
    config: {
      auditMacKey: Buffer.alloc(32, 7),
      maxAncsPerTenant: 10,
      envelopeMaxAgeSeconds: 300,
      tenantRetentionMs: 29 * 24 * 3600 * 1000,
      disableUnreferencedKekVersions: false,
      ldap: {
        urlTemplate: cfg.ldapUrl,
        startTls: false,
        timeoutMs: 2000,
        dnsOverrides: { 'corp.contoso.test': '127.0.0.1' },
        upnBind: 'auto',
        passwordExpiryWarningDays: 14,
      },
    },
  },
});
const running = worker.run();
process.stdout.write('worker running\n');
await running;
await pool.end();

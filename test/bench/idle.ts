/**
 * Deactivated tenants waiting in their retention window cost the worker nothing while they wait:
 * worker RSS and CPU over an idle window with 10,000 deactivated tenants, against an idle worker with
 * none, both measured over the same window (so background load on a shared machine hits both).
 *
 * Seeding, so that 10,000 tenants take minutes, not an hour, and every one is still a real tenant
 * workflow waiting on its durable retention timer over the rows the service would have:
 *   1. Rows straight into PostgreSQL in the shape provideCredential writes them: the tenant, and for a
 *      share of tenants (BENCH_IDLE_ANC_SHARE, default 0.5) a random 256-bit tenant key wrapped
 *      locally with the run's KEK (RSA-OAEP-256, the worker's key) and BENCH_IDLE_ANCS_PER_TENANT
 *      (default 2) ANCs, each with a password sealed under that key by the service's sealCredential.
 *      The other tenants have no ANC left (all deleted), which the service allows.
 *   2. The first BENCH_IDLE_SDK tenants (default 1,000) are deactivated through the SDK
 *      (`deactivateTenant`: update-with-start of the tenant workflow) at concurrency
 *      BENCH_IDLE_CONCURRENCY (default 64): the whole path, as an operator or billing would.
 *   3. The rest are deactivated by the service's own `deactivateTenantData` (the activity the tenant
 *      workflow runs: tenant and ANC rows marked deactivated with the purge date, audit record
 *      appended to the chain with the worker's audit key), called from this process over the
 *      database, and then given their workflow:
 *      - by default started from a raw client with the dates the row holds, as the run a tenant
 *        workflow continues as (`carried`: deactivated, purge date): it publishes its state and
 *        sleeps until `purge_at` in its first workflow task (10 history events instead of 31);
 *      - with BENCH_IDLE_START=sweep, by the service's tenant sweep (`tenantSweepWorkflow`, as its
 *        hourly schedule runs it): each new run reads the row, then sleeps (16 events).
 *      Both are the tenant workflow's own code waiting on its durable timer; the seeding is bound by
 *      the server's work per workflow, which is why the first is faster.
 * ANC workflows are not started: a deactivated ANC's workflow waits for a signal with no timer, the
 * ANC rows are what the tenant workflow reads (and the purge deletes). The seeding is checked:
 * Temporal's visibility must count every tenant's workflow running and deactivated, and a sample of
 * tenants must answer the SDK's getTenant with the purge date the database holds.
 *
 * The sweep and rotation schedules are paused while the windows are measured (each worker start
 * points them at its own task queue); the sweep's cost is measured on its own, as a second sweep
 * over the tenants once they all have their workflow (what the hourly schedule costs).
 *
 * Two windows:
 *   1. right after, with the worker that ran the tenants' workflows (their workflows in its cache);
 *   2. with a freshly started worker (nothing cached; the tenants wait on the server's timers).
 * Each window compares against a fresh worker process on a task queue with no workflows.
 *
 *   npm run bench -- idle      (BENCH_IDLE_TENANTS=10000, BENCH_IDLE_SECONDS=120)
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import type { ActivityDeps } from '../../activities/deps';
import { deactivateTenantData } from '../../activities/tenant';
import { AncClient } from '../../client/sdk';
import { WorkflowIdConflictPolicy } from '@temporalio/client';
import { ROTATION_SCHEDULE_ID, TENANT_SWEEP_SCHEDULE_ID, tenantWorkflowId } from '../../common/ids';
import { TenantIdKey } from '../../common/search-attributes';
import { tenantSummary } from '../../common/summaries';
import type { tenantWorkflow } from '../../workflows/tenant';
import type { TenantSweepResult } from '../../workflows/tenant-sweep';
import { azureEmulatorKek } from '../support/emulator-process';
import {
  BENCH_HSM_OPS_PER_SECOND,
  fmt,
  insertSeededAncs,
  machineLine,
  mib,
  runConcurrent,
  sealSeededCredentials,
  seededCredentials,
  sleep,
  startBenchStack,
  startServiceWorker,
  type BenchStack,
  type ChildWorker,
} from './support';

const DAY = 86_400_000;
const RETENTION_MS = 29 * DAY; // the worker's default TENANT_RETENTION

interface Sample {
  rssStart: number;
  rssEnd: number;
  rssMax: number;
  cpuSeconds: number;
}

/** Samples both workers every second for `seconds`. */
async function watch(workers: ChildWorker[], seconds: number): Promise<Sample[]> {
  const samples = workers.map((w) => ({ rssStart: w.rss(), rssEnd: 0, rssMax: 0, cpuSeconds: -w.cpuSeconds() }));
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    workers.forEach((w, i) => {
      const s = samples[i] as Sample;
      s.rssMax = Math.max(s.rssMax, w.rss());
    });
    await sleep(1000);
  }
  workers.forEach((w, i) => {
    const s = samples[i] as Sample;
    s.rssEnd = w.rss();
    s.rssMax = Math.max(s.rssMax, s.rssEnd);
    s.cpuSeconds += w.cpuSeconds();
  });
  return samples;
}

function report(label: string, seconds: number, withTenants: Sample, none: Sample): void {
  const line = (name: string, s: Sample) =>
    `      ${name.padEnd(30)} RSS ${mib(s.rssStart)} → ${mib(s.rssEnd)} (max ${mib(s.rssMax)},` +
    ` growth ${fmt((s.rssEnd - s.rssStart) / 2 ** 20)} MiB), CPU ${fmt(s.cpuSeconds, 2)} s = ${fmt((100 * s.cpuSeconds) / seconds, 2)}% of a core`;
  console.log(`    ${label}`);
  console.log(line('with the deactivated tenants', withTenants));
  console.log(line('idle worker with none', none));
  console.log(
    `      => RSS ${fmt(withTenants.rssEnd / none.rssEnd, 2)}x, CPU ${fmt(withTenants.cpuSeconds / Math.max(none.cpuSeconds, 0.01), 2)}x the worker with none`,
  );
}

const rate = (n: number, ms: number) => `${fmt(n / (ms / 1000))}/s`;

/**
 * Tenants, tenant keys, ANCs and sealed credentials in the shape provideCredential writes them
 * (all active). Returns the tenant ids and how many ANCs were written.
 */
async function seedRows(
  stack: BenchStack,
  wrap: (key: Buffer) => Promise<Buffer>,
  kek: { kekId: string; version: string },
  n: number,
  ancShare: number,
  ancsPerTenant: number,
): Promise<{ ids: string[]; ancs: number }> {
  const pool = stack.db.pool;
  const now = Date.now();
  const ids = Array.from({ length: n }, (_, i) => `idle${String(i).padStart(5, '0')}`);
  // Spread the tenants with ANCs evenly, so both seeding paths get their share.
  const withAncs = (i: number) => Math.floor((i + 1) * ancShare) > Math.floor(i * ancShare);
  let ancs = 0;
  const batch = 500;
  for (let start = 0; start < n; start += batch) {
    const slice = ids.slice(start, start + batch);
    const keyed = { tenant: [] as string[], wrapped: [] as Buffer[] };
    const cred = seededCredentials();
    for (let i = start; i < start + slice.length; i++) {
      if (!withAncs(i)) continue;
      const tenantId = ids[i] as string;
      const key = randomBytes(32);
      keyed.tenant.push(tenantId);
      keyed.wrapped.push(await wrap(key));
      sealSeededCredentials(cred, tenantId, key, ancsPerTenant, i);
      key.fill(0);
    }
    ancs += cred.anc.length;
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('INSERT INTO tenants (tenant_id) SELECT unnest($1::text[])', [slice]);
      await client.query(
        `INSERT INTO tenant_keys (tenant_id, version, state, wrapped_key, kek_id, kek_version, created_at, expires_at)
         SELECT t, 1, 'active', w, $3, $4, $5, $6 FROM unnest($1::text[], $2::bytea[]) AS x(t, w)`,
        [keyed.tenant, keyed.wrapped, kek.kekId, kek.version, new Date(now - 30 * DAY), new Date(now + 335 * DAY)],
      );
      await insertSeededAncs(client, cred);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  }
  await pool.query('ANALYZE');
  return { ids, ancs };
}

const RUNNING_DEACTIVATED = `WorkflowType = 'tenantWorkflow' AND ExecutionStatus = 'Running' AND TenantState = 'deactivated'`;

export async function idle(): Promise<void> {
  const n = Number(process.env.BENCH_IDLE_TENANTS ?? 10_000);
  const seconds = Number(process.env.BENCH_IDLE_SECONDS ?? 120);
  const ancShare = Number(process.env.BENCH_IDLE_ANC_SHARE ?? 0.5);
  const ancsPerTenant = Number(process.env.BENCH_IDLE_ANCS_PER_TENANT ?? 2);
  const viaSdk = Math.min(n, Number(process.env.BENCH_IDLE_SDK ?? 1000));
  const concurrency = Number(process.env.BENCH_IDLE_CONCURRENCY ?? 64);
  const startMode = process.env.BENCH_IDLE_START === 'sweep' ? 'sweep' : 'carried';
  console.log(`${n} deactivated tenants waiting in their retention window: worker RSS and CPU over ${seconds} s idle`);
  console.log(`  machine: ${machineLine()}`);
  const stack = await startBenchStack('idle');
  // The worker's audit key, so the records written from here continue the chain as the worker would.
  const auditMacKey = randomBytes(32);
  const workerEnv = { AUDIT_MAC_KEY: auditMacKey.toString('base64') };
  const queue = `bench-idle-${randomBytes(3).toString('hex')}`;
  const emptyQueue = () => `bench-none-${randomBytes(3).toString('hex')}`;
  const workers: ChildWorker[] = [];
  const start = async (q: string) => {
    const w = await startServiceWorker(stack, q, workerEnv);
    workers.push(w);
    return w;
  };
  try {
    // The worker's KEK (same key name), with a version made before the worker starts, which it adopts.
    const provider = azureEmulatorKek(
      { url: stack.vault.url, caPem: stack.vault.caPem },
      { keyName: stack.keyName, hsmOpsPerSecond: BENCH_HSM_OPS_PER_SECOND },
    );
    const kekVersion = await provider.createVersion(new Date(Date.now() + 365 * DAY));
    let t0 = performance.now();
    const { ids, ancs } = await seedRows(
      stack,
      (k) => provider.wrap(k, kekVersion),
      kekVersion,
      n,
      ancShare,
      ancsPerTenant,
    );
    const seedMs = performance.now() - t0;
    console.log(
      `  seeding 1. rows: ${n} tenants, ${ancs} ANCs with sealed credentials (${Math.round(n * ancShare)} tenants with` +
        ` ${ancsPerTenant} each) written to PostgreSQL in ${fmt(seedMs / 1000)} s (${rate(n, seedMs)} tenants)`,
    );

    const first = await start(queue);
    // Each worker start points the schedules at its own queue; paused, they fire in no window.
    for (const id of [TENANT_SWEEP_SCHEDULE_ID, ROTATION_SCHEDULE_ID]) {
      await stack.client.schedule.getHandle(id).pause('idle benchmark: measured on its own');
    }
    const sdk = new AncClient({ client: stack.client, taskQueue: queue, kekTrust: { unverified: true } });
    const sdkRun = await runConcurrent(viaSdk, concurrency, (i) =>
      sdk.deactivateTenant(ids[i] as string, { actor: 'bench', reason: 'idle benchmark' }),
    );
    console.log(
      `  seeding 2. ${viaSdk} tenants deactivated through the SDK in ${fmt(sdkRun.wallMs / 1000)} s` +
        ` (${rate(viaSdk, sdkRun.wallMs)} at concurrency ${concurrency})`,
    );

    const rest = ids.slice(viaSdk);
    const sweepId = `bench-sweep-${randomBytes(3).toString('hex')}`;
    const deps = {
      pool: stack.db.pool,
      config: { auditMacKey, tenantRetentionMs: RETENTION_MS },
      logger: pino({ level: 'silent' }),
    } as unknown as ActivityDeps;
    const purgeDates = new Map<string, { deactivatedAt: string; purgeAt: string }>();
    const dataRun = await runConcurrent(rest.length, 8, async (i) => {
      const tenantId = rest[i] as string;
      const result = await deactivateTenantData(deps, {
        tenantId,
        nowMs: Date.now(),
        actor: 'bench',
        reason: 'idle benchmark',
        workflowId: tenantWorkflowId(tenantId),
      });
      purgeDates.set(tenantId, result);
    });
    t0 = performance.now();
    let how: string;
    if (startMode === 'sweep') {
      const swept = await stack.client.workflow.execute('tenantSweepWorkflow', {
        workflowId: `${sweepId}-seed`,
        taskQueue: queue,
        args: [{}],
      });
      how =
        `the tenant sweep (checked ${(swept as TenantSweepResult).checked},` +
        ` restarted ${(swept as TenantSweepResult).restarted}) in ${fmt((performance.now() - t0) / 1000)} s`;
    } else {
      // The run a tenant workflow continues as (continue-as-new), from the dates the row holds.
      const started = await runConcurrent(rest.length, concurrency, (i) => {
        const tenantId = rest[i] as string;
        const dates = purgeDates.get(tenantId) as { deactivatedAt: string; purgeAt: string };
        return stack.client.workflow.start<typeof tenantWorkflow>('tenantWorkflow', {
          workflowId: tenantWorkflowId(tenantId),
          taskQueue: queue,
          args: [
            {
              tenantId,
              carried: {
                phase: 'deactivated',
                deactivatedAtMs: Date.parse(dates.deactivatedAt),
                purgeAtMs: Date.parse(dates.purgeAt),
                cycles: 0,
              },
            },
          ],
          workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
          staticSummary: tenantSummary(tenantId),
          typedSearchAttributes: [{ key: TenantIdKey, value: tenantId }],
        });
      });
      how = `their workflows started from the rows' dates in ${fmt(started.wallMs / 1000)} s (concurrency ${concurrency})`;
    }
    let waiting = 0;
    for (;;) {
      waiting = (await stack.client.workflow.count(RUNNING_DEACTIVATED)).count;
      if (waiting >= n || performance.now() - t0 > 30 * 60_000) break;
      await sleep(2000);
    }
    const restMs = performance.now() - t0;
    console.log(
      `  seeding 3. ${rest.length} tenants deactivated by the service's deactivateTenantData in` +
        ` ${fmt(dataRun.wallMs / 1000)} s (${rate(rest.length, dataRun.wallMs)} at concurrency 8), then ${how};` +
        ` all workflows waiting after ${fmt(restMs / 1000)} s (${rate(rest.length, restMs)})`,
    );
    const seedingMs = sdkRun.wallMs + dataRun.wallMs + restMs;
    console.log(
      `  seeding in all: ${n} deactivated tenants with their workflow in ${fmt((seedMs + seedingMs) / 1000)} s` +
        ` (${rate(n, seedMs + seedingMs)}; the SDK path alone ${rate(viaSdk, sdkRun.wallMs)})`,
    );

    // Checks: every tenant has a running workflow in the deactivated state, and a sample answers with
    // the purge date the database holds.
    if (waiting !== n) throw new Error(`visibility counts ${waiting} running deactivated tenant workflows, not ${n}`);
    const sample = Array.from({ length: 24 }, (_, k) => ids[Math.floor((k * (n - 1)) / 23)] as string);
    const { rows } = await stack.db.pool.query<{ tenant_id: string; purge_at: Date; state: string }>(
      'SELECT tenant_id, purge_at, state FROM tenants WHERE tenant_id = ANY($1)',
      [sample],
    );
    for (const row of rows) {
      const view = await sdk.getTenant(row.tenant_id);
      if (row.state !== 'deactivated' || view.state !== 'deactivated' || view.purgeAt !== row.purge_at.toISOString()) {
        throw new Error(`tenant ${row.tenant_id}: workflow says ${view.state} until ${view.purgeAt}, row ${row.state}`);
      }
    }
    const events = async (tenantId: string) =>
      (await stack.client.workflow.getHandle(tenantWorkflowId(tenantId)).describe()).historyLength;
    console.log(
      `  checked: ${waiting} tenant workflows running and deactivated (visibility); ${rows.length} sampled tenants` +
        ` answer getTenant with their row's purge date; history events ${await events(ids[0] as string)}` +
        ` (through the SDK) and ${await events(ids[n - 1] as string)} (${startMode === 'sweep' ? 'from the sweep' : 'started from the rows'})`,
    );

    // What the hourly sweep costs with every tenant's workflow running: one describe per tenant.
    await sleep(5_000);
    const cpu0 = first.cpuSeconds();
    t0 = performance.now();
    const again = (await stack.client.workflow.execute('tenantSweepWorkflow', {
      workflowId: `${sweepId}-again`,
      taskQueue: queue,
      args: [{}],
    })) as TenantSweepResult;
    const againMs = performance.now() - t0;
    const sweepCpu = first.cpuSeconds() - cpu0;
    console.log(
      `  the hourly tenant sweep over them: checked ${again.checked}, restarted ${again.restarted}, ${fmt(againMs / 1000)} s,` +
        ` worker CPU ${fmt(sweepCpu, 1)} s (${fmt((100 * sweepCpu) / 3600, 2)}% of a core averaged over the hour)`,
    );

    let none = await start(emptyQueue());
    await sleep(10_000);
    const [warm, noneA] = await watch([first, none], seconds);
    report('1. the worker that ran them (their workflows cached)', seconds, warm as Sample, noneA as Sample);

    await first.stop();
    await none.stop();
    const fresh = await start(queue);
    none = await start(emptyQueue());
    await sleep(10_000);
    const [cold, noneB] = await watch([fresh, none], seconds);
    report(
      '2. a freshly started worker (nothing cached, timers on the server)',
      seconds,
      cold as Sample,
      noneB as Sample,
    );
    console.log('');
  } finally {
    for (const w of workers) await w.stop();
    await stack.close();
  }
}

/**
 * Key Vault requests per service operation, counted at the Key Vault emulator (not assumed).
 *
 * Runs the real workflows and activities on the time-skipping test server with PostgreSQL and the
 * Azure Key Vault provider talking HTTPS to an emulator process of its own, so every request the
 * emulator counts was made by the operation under measurement. Each step starts from zero counts and
 * ends when the work it caused (including the health check that follows a change) has finished.
 *
 * These counts are the inputs of the capacity model (test/capacity/model.ts); the test in
 * test/capacity-calls.test.ts keeps the two equal.
 */
import { randomUUID } from 'node:crypto';
import { Client } from '@temporalio/client';
import proto from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { provideCredential } from '../../activities/credentials';
import { KekDirectory } from '../../activities/kek/directory';
import { TenantKeyCache, type TenantKeyCacheLimits } from '../../activities/kek/tenant-key-cache';
import { describeCurrentKek } from '../../activities/keyring';
import { sealPasswordEnvelope } from '../../client/envelope';
import { AncClient } from '../../client/sdk';
import { SEARCH_ATTRIBUTES } from '../../common/search-attributes';
import type { PublicKek } from '../../common/types';
import type { EmulatorStats, OperationName } from '../../stack/keyvault-emulator/server';
import type { rotationWorkflow } from '../../workflows/rotation';
import type { RotationProgress } from '../../workflows/rotation-definitions';
import { azureEmulatorKek, startEmulatorProcess, type EmulatorProcess } from '../support/emulator-process';
import { createHarness, startTimeSkippingServer, type Harness } from '../support/harness';

/** Key Vault requests by operation (only those that occurred). */
export type CallCounts = Partial<Record<OperationName, number>>;

/** The operations measured, each as one unit of work (see {@link MEASURED_STEPS}). */
export type MeasuredOperation =
  | 'createFirstAncOfTenant'
  | 'createAnc'
  | 'updatePassword'
  | 'healthCheckOnDemand'
  | 'healthCheckPeriodic'
  | 'deleteAnc'
  | 'deactivateTenant'
  | 'reactivateTenant'
  | 'purgeTenant'
  | 'kekDirectoryRefresh'
  | 'rotationNothingDue'
  | 'kekRenewal'
  | 'rewrapPerTenantKey'
  | 'replacementRun'
  | 'replacePerTenantKey';

export const MEASURED_STEPS: Record<MeasuredOperation, string> = {
  createFirstAncOfTenant: 'create, first ANC of a tenant (new tenant key), with its follow-up health check',
  createAnc: 'create, another ANC of a tenant that has a key, with its follow-up health check',
  updatePassword: 'update the password, with its follow-up health check',
  healthCheckOnDemand: 'on-demand health check (runHealthChecks)',
  healthCheckPeriodic: 'periodic health check, per ANC',
  deleteAnc: 'delete an ANC',
  deactivateTenant: 'deactivate a tenant (2 ANCs)',
  reactivateTenant: 'reactivate a tenant (2 ANCs)',
  purgeTenant: 'purge a tenant after its retention (2 ANCs, 3 credential versions)',
  kekDirectoryRefresh: "reading the current KEK version (each worker's directory, once a minute at most)",
  rotationNothingDue: 'daily rotation run with nothing due',
  kekRenewal: 'rotation run that renews the KEK, without its re-wraps',
  rewrapPerTenantKey: 're-wrap of one tenant key with the new KEK version',
  replacementRun: 'rotation run that replaces expired tenant keys, without their per-key calls',
  replacePerTenantKey: 'replacement of one expired tenant key (2 ANCs, credentials re-sealed)',
};

const DAY = 86_400_000;
const MINUTE = 60_000;
const HEALTH_INTERVAL_MINUTES = 60;
const REWRAP_TENANTS = 3;
const spec = {
  displayName: 'Capacity',
  adDomainName: 'corp.contoso.test',
  organizationalUnit: 'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};
const actor = 'capacity@contoso.test';

function countsOf(stats: EmulatorStats): CallCounts {
  const out: CallCounts = {};
  for (const [op, n] of Object.entries(stats.operations) as [OperationName, number][]) if (n > 0) out[op] = n;
  return out;
}

function scale(counts: CallCounts, divisor: number): CallCounts {
  const out: CallCounts = {};
  for (const [op, n] of Object.entries(counts) as [OperationName, number][]) {
    if (n % divisor !== 0) throw new Error(`${n} ${op} calls do not divide evenly by ${divisor}`);
    out[op] = n / divisor;
  }
  return out;
}

function minus(a: CallCounts, b: CallCounts): CallCounts {
  const out: CallCounts = {};
  for (const op of new Set([...Object.keys(a), ...Object.keys(b)]) as Set<OperationName>) {
    const n = (a[op] ?? 0) - (b[op] ?? 0);
    if (n < 0) throw new Error(`negative ${op} count`);
    if (n > 0) out[op] = n;
  }
  return out;
}

/** The per-key part of a rotation run: requests that use the key (the rest is per run). */
function cryptoOnly(counts: CallCounts): CallCounts {
  const out: CallCounts = {};
  for (const op of ['wrapkey', 'unwrapkey', 'encrypt', 'decrypt'] as const) if (counts[op]) out[op] = counts[op];
  return out;
}

async function until(what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The time-skipping server does not implement ListSearchAttributes: add the service's directly. */
async function addSearchAttributes(env: TestWorkflowEnvironment): Promise<void> {
  const T = proto.temporal.api.enums.v1.IndexedValueType;
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(
      Object.entries(SEARCH_ATTRIBUTES).map(([name, type]) => [
        name,
        type === 'Datetime' ? T.INDEXED_VALUE_TYPE_DATETIME : T.INDEXED_VALUE_TYPE_KEYWORD,
      ]),
    ),
  });
}

/**
 * Measures every operation of {@link MEASURED_STEPS}. Needs the local stack (PostgreSQL, and the
 * Temporal test server from .tools); starts and stops its own emulator and test server.
 */
export async function measureCallsPerOperation(
  opts: { cache?: TenantKeyCacheLimits } = {},
): Promise<Record<MeasuredOperation, CallCounts>> {
  const kv: EmulatorProcess = await startEmulatorProcess();
  let env: TestWorkflowEnvironment | undefined;
  let h: Harness | undefined;
  try {
    env = await startTimeSkippingServer();
    await addSearchAttributes(env);
    const kek = azureEmulatorKek(kv);
    h = await createHarness({
      env,
      kek,
      startSingletons: false,
      // Envelopes carry wall-clock time; this run moves workflow time by a year.
      config: { envelopeMaxAgeSeconds: 400 * 24 * 3600, tenantRetentionMs: 29 * 24 * 3600 * 1000 },
    });
    const harness = h;
    // The KEK directory as the worker builds it (it re-reads the current version once a minute),
    // not the tests' uncached one.
    harness.deps.kek = new KekDirectory(kek);
    // The worker's tenant-key cache, when measuring with it (the harness has none: every use unwraps).
    if (opts.cache) harness.deps.tenantKeyCache = new TenantKeyCache(opts.cache);
    const testEnv = env;
    // No workflow cache: no task is routed to a stopped worker's sticky queue on this server.
    await harness.startWorker({ options: { maxCachedWorkflows: 0 } });
    // A client that does not skip time by itself (this file moves it with env.sleep only).
    const client = new Client({ connection: env.connection, namespace: env.namespace ?? 'default' });
    // The KEK public key is read once, before any counting, as a client would cache it.
    const publicKek: PublicKek = await describeCurrentKek(harness.deps);
    const sdk = new (class extends AncClient {
      override async publicKek(): Promise<PublicKek> {
        return publicKek;
      }
    })({ client, taskQueue: harness.taskQueue, healthCheckIntervalMinutes: HEALTH_INTERVAL_MINUTES });

    const checks = async (tenantId: string): Promise<number> => {
      const { rows } = await harness.db.pool.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM health_checks WHERE tenant_id = $1',
        [tenantId],
      );
      return rows[0]?.n ?? 0;
    };
    const ancState = async (tenantId: string, ancId: string): Promise<string | undefined> => {
      const { rows } = await harness.db.pool.query<{ state: string }>(
        'SELECT state FROM ancs WHERE tenant_id = $1 AND anc_id = $2',
        [tenantId, ancId],
      );
      return rows[0]?.state;
    };
    /** Counts what `run` causes, until `done` holds and the emulator has been quiet for a moment. */
    let step = 'start';
    const measure = async (run: () => Promise<unknown>, done: () => Promise<boolean>): Promise<CallCounts> => {
      // Steady state: the worker's KEK directory holds the current version (it re-reads once a minute).
      await harness.deps.kek.current();
      await kv.reset();
      await run();
      await until(`${step} to finish`, done);
      let last = -1;
      for (;;) {
        const total = (await kv.stats()).totalRequests;
        if (total === last) break;
        last = total;
        await new Promise((r) => setTimeout(r, 300));
      }
      return countsOf(await kv.stats());
    };

    // ---- ANC lifecycle: one tenant, two ANCs.
    const t = `cap-${randomUUID().slice(0, 8)}`;
    step = 'createFirstAncOfTenant';
    const createFirstAncOfTenant = await measure(
      () => sdk.createAnc({ tenantId: t, ancId: 'a', ...spec, password: 'Cap#Pass-a1', actor }),
      async () => (await checks(t)) === 1,
    );
    step = 'createAnc';
    const createAnc = await measure(
      () => sdk.createAnc({ tenantId: t, ancId: 'b', ...spec, password: 'Cap#Pass-b1', actor }),
      async () => (await checks(t)) === 2,
    );
    step = 'updatePassword';
    const updatePassword = await measure(
      () => sdk.updateAncPassword(t, 'a', 'Cap#Pass-a2', { actor }),
      async () => (await checks(t)) === 3,
    );
    step = 'healthCheckOnDemand';
    const healthCheckOnDemand = await measure(
      () => sdk.runHealthChecks(t, 'a', { actor }),
      async () => (await checks(t)) === 4,
    );
    // Periodic checks fall at each ANC's own slot in the interval: move time on until two have run.
    step = 'periodic checks';
    const periodicBoth = await measure(
      async () => {
        for (let i = 0; i < 60 && (await checks(t)) < 6; i++) {
          await testEnv.sleep(5 * MINUTE);
          await new Promise((r) => setTimeout(r, 200));
        }
      },
      async () => (await checks(t)) >= 6,
    );
    const periodicRan = (await checks(t)) - 4;
    const healthCheckPeriodic = scale(periodicBoth, periodicRan);

    const before = await checks(t);
    await sdk.createAnc({ tenantId: t, ancId: 'c', ...spec, password: 'Cap#Pass-c1', actor });
    await until('the follow-up check', async () => (await checks(t)) === before + 1);
    step = 'delete';
    const deleteAnc = await measure(
      () => sdk.deleteAnc(t, 'c', { actor }),
      async () => (await ancState(t, 'c')) === undefined,
    );

    step = 'deactivateTenant';
    const deactivateTenant = await measure(
      () => sdk.deactivateTenant(t, { actor }),
      async () => (await ancState(t, 'a')) === 'deactivated' && (await ancState(t, 'b')) === 'deactivated',
    );
    step = 'reactivateTenant';
    const reactivateTenant = await measure(
      () => sdk.reactivateTenant(t, { actor }),
      async () => (await ancState(t, 'a')) === 'active' && (await ancState(t, 'b')) === 'active',
    );
    await sdk.deactivateTenant(t, { actor });
    await until('the ANCs to be deactivated', async () => (await ancState(t, 'b')) === 'deactivated');
    step = 'purgeTenant';
    const purgeTenant = await measure(
      () => testEnv.sleep(29 * DAY + MINUTE),
      async () => (await sdk.getTenant(t)).state === 'purged' && (await ancState(t, 'a')) === undefined,
    );

    step = 'kekDirectoryRefresh';
    const kekDirectoryRefresh = await measure(
      async () => {
        harness.deps.kek.invalidate();
        await harness.deps.kek.current();
      },
      async () => true,
    );

    // ---- Rotation: tenants seeded through the provide activity (no ANC workflows, whose timers
    // would fire every hour of the year skipped).
    const t0 = await testEnv.currentTimeMs();
    const rotationTenants = Array.from({ length: REWRAP_TENANTS }, (_, i) => `rot-${i}-${randomUUID().slice(0, 6)}`);
    for (const tenantId of rotationTenants) {
      for (const ancId of ['a', 'b']) {
        const passwordEnvelope = await sealPasswordEnvelope({
          password: `Rot#${tenantId}#${ancId}`,
          kek: publicKek,
          tenantId,
          ancId,
          op: 'create',
        });
        await provideCredential(harness.deps, {
          mode: 'create',
          tenantId,
          ancId,
          spec,
          passwordEnvelope,
          receivedAtMs: Date.now(),
          nowMs: t0,
          operationId: `seed/${randomUUID()}`,
          actor,
          workflowId: 'seed',
        });
      }
    }
    let runs = 0;
    const rotate = (): Promise<RotationProgress> =>
      // The plain client: the environment's own would skip time while it waits. No grace timer.
      client.workflow.execute<typeof rotationWorkflow>('rotationWorkflow', {
        taskQueue: harness.taskQueue,
        workflowId: `capacity-rotation-${++runs}`,
        args: [{ batchSize: 100, kekGraceSeconds: 0 }],
      });
    const expectCounts = (r: RotationProgress, want: Partial<RotationProgress['counts']>) => {
      for (const [k, v] of Object.entries(want)) {
        const got = r.counts[k as keyof RotationProgress['counts']];
        if (got !== v)
          throw new Error(`rotation run ${r.rotationId}: ${k} is ${got}, expected ${v}: ${JSON.stringify(r)}`);
      }
    };

    step = 'rotationNothingDue';
    const rotationNothingDue = await measure(
      async () => expectCounts(await rotate(), { rewrapped: 0, tenantKeysReplaced: 0 }),
      async () => true,
    );
    // Nine months and a day after the KEK version was made: renewal, then every tenant key re-wrapped.
    await testEnv.sleep(274 * DAY);
    const renewal = await measure(
      async () => {
        const r = await rotate();
        if (!r.kek.renewed) throw new Error('the KEK was not renewed');
        expectCounts(r, { rewrapped: REWRAP_TENANTS, tenantKeysReplaced: 0 });
      },
      async () => true,
    );
    const rewrapPerTenantKey = scale(cryptoOnly(renewal), REWRAP_TENANTS);
    const kekRenewal = minus(renewal, cryptoOnly(renewal));
    // Twelve months and a day after the tenant keys were made: each is replaced.
    await testEnv.sleep(92 * DAY);
    const replacement = await measure(
      async () => expectCounts(await rotate(), { tenantKeysReplaced: REWRAP_TENANTS, rewrapped: 0 }),
      async () => true,
    );
    const replacePerTenantKey = scale(cryptoOnly(replacement), REWRAP_TENANTS);
    const replacementRun = minus(replacement, cryptoOnly(replacement));

    return {
      createFirstAncOfTenant,
      createAnc,
      updatePassword,
      healthCheckOnDemand,
      healthCheckPeriodic,
      deleteAnc,
      deactivateTenant,
      reactivateTenant,
      purgeTenant,
      kekDirectoryRefresh,
      rotationNothingDue,
      kekRenewal,
      rewrapPerTenantKey,
      replacementRun,
      replacePerTenantKey,
    };
  } finally {
    h?.deps.tenantKeyCache?.clear();
    await h?.close();
    await env?.teardown();
    await kv.stop();
  }
}

/**
 * Capacity: the model's table and a simulated day at fleet scale.
 *   npm run bench:capacity                    model table, then the simulation (100,000 tenants, 1,000,000 ANCs)
 *   npm run bench:capacity -- --measure       also measures the calls per operation at the emulator (needs the stack)
 *   npm run bench:capacity -- --tenants 10000 a smaller fleet
 *   npm run bench:capacity -- --only 1,4      some variants only
 * Prints figures; asserts nothing (test/capacity-*.test.ts do).
 */
import { DEFAULT_TENANT_KEY_CACHE_LIMITS } from '../../activities/kek/tenant-key-cache';
import { MEASURED_STEPS, measureCallsPerOperation, type MeasuredOperation } from '../capacity/measure-calls';
import {
  dailyCalls,
  DEFAULT_WORKLOAD,
  defaultBudgetPerSecond,
  MEASURED_CALLS,
  periodicHitRatio,
  tenantsAtSaturation,
  vaultLimitPerSecond,
} from '../capacity/model';
import { simulateDay, type SimOptions, type SimResult } from '../capacity/sim/simulation';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const value = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits });
const calls = (c: Record<string, number | undefined>) =>
  Object.entries(c)
    .map(([op, n]) => `${n} ${op}`)
    .join(', ') || 'none';

async function printCallsPerOperation(): Promise<void> {
  const measured = flag('--measure') ? await measureCallsPerOperation() : MEASURED_CALLS;
  console.log(
    `Key Vault calls per operation (${flag('--measure') ? 'measured now at the emulator' : 'as measured, test/capacity/model.ts'})`,
  );
  for (const [op, what] of Object.entries(MEASURED_STEPS) as [MeasuredOperation, string][]) {
    console.log(`  ${op.padEnd(24)} ${calls(measured[op]).padEnd(28)} ${what}`);
  }
  console.log();
}

function printModel(): void {
  // The HSM task queue's default rate: 0.4 of KEYVAULT_HSM_OPS_PER_SECOND (half the vault's limit).
  const budget = Math.floor(0.4 * defaultBudgetPerSecond(3072));
  console.log(
    `Model: calls per day (RSA-HSM 3072: vault limit ${vaultLimitPerSecond('RSA-HSM', 3072)}/s, default HSM queue rate ${budget}/s)`,
  );
  console.log('  tenants  ANCs        periodic/day  other HSM/day  mean/s  renewal day extra  share of the queue rate');
  for (const tenants of [1_000, 10_000, 100_000]) {
    const d = dailyCalls({ ...DEFAULT_WORKLOAD, tenants });
    const mean = d.hsmTotal / 86_400;
    console.log(
      `  ${fmt(tenants).padStart(7)}  ${fmt(tenants * 10).padStart(9)}  ${fmt(d.periodicChecks).padStart(13)}  ${fmt(
        d.hsmTotal - d.periodicChecks,
      ).padStart(13)}  ${mean.toFixed(1).padStart(6)}  ${fmt(d.kekRenewalDayExtra).padStart(17)}  ${(
        (100 * mean) /
        budget
      ).toFixed(0)}%`,
    );
  }
  console.log(
    `  one vault saturates at ${fmt(tenantsAtSaturation(DEFAULT_WORKLOAD, budget))} tenants (default rate), ${fmt(
      tenantsAtSaturation(DEFAULT_WORKLOAD, 45),
    )} at 45/s`,
  );
  const hit = periodicHitRatio({
    ancsPerTenant: 10,
    checkIntervalMinutes: 360,
    cacheMaxAgeMinutes: 5,
    maxUses: 1000,
    workers: DEFAULT_WORKLOAD.workers,
  });
  console.log(`  expected periodic hit ratio, 5-minute cache, 4 workers: ${(100 * hit).toFixed(1)}%\n`);
}

function variants(tenants: number): { name: string; options: SimOptions }[] {
  const base: SimOptions = {
    tenants,
    ancsPerTenant: 10,
    checkIntervalMinutes: 360,
    // HSM_QUEUE_ACTIVITIES_PER_SECOND's default: 0.4 of KEYVAULT_HSM_OPS_PER_SECOND (25/s for RSA-3072).
    budgetPerSecond: Math.floor(0.4 * defaultBudgetPerSecond(3072)),
    vaultLimitPer10s: 500,
    vaults: 1,
    workers: 4,
    priorities: false,
    cache: undefined,
    scheduling: 'fixed-interval',
    kvLatencyMs: 25,
    rotationAtMs: 2 * 3_600_000,
    rotationConcurrency: 16,
    outage: { startMs: 14 * 3_600_000, durationMs: 30 * 60_000 },
    // Per day at 1,000,000 ANCs: 0.1% new ANCs, 4 password changes per ANC per year, 1% checked on demand.
    createsPerDay: tenants * 10 * 0.001,
    updatesPerDay: (tenants * 10 * 4) / 365,
    onDemandChecksPerDay: tenants * 10 * 0.01,
    durationMs: 86_400_000,
    seed: 13,
  };
  const cache = DEFAULT_TENANT_KEY_CACHE_LIMITS;
  const slots = { ...base, scheduling: 'slots' as const };
  // Key Vault counts per 10 s: a bucket of burst = rate lets burst + 10·rate through in 10 s, so 45/s keeps
  // a vault of 500 per 10 s inside its limit.
  const full = 45;
  return [
    { name: 'A FIFO, no cache', options: slots },
    { name: 'B priorities, no cache', options: { ...slots, priorities: true } },
    { name: 'C priorities, cache', options: { ...slots, priorities: true, cache } },
    // At the full rate the cache's share of periodic checks is a few percent (C against B) and it makes a
    // day several times slower to simulate: these run without it.
    { name: 'D priorities, rate 45/s', options: { ...slots, priorities: true, budgetPerSecond: full } },
    {
      name: 'E priorities, rate 45/s, 2 vaults',
      options: { ...slots, priorities: true, budgetPerSecond: full, vaults: 2 },
    },
    {
      name: 'F priorities, rate 45/s, 2 vaults, fixed interval',
      options: { ...base, priorities: true, budgetPerSecond: full, vaults: 2 },
    },
  ];
}

const sec = (ms: number) =>
  ms < 1000 ? `${ms.toFixed(0)} ms` : ms < 120_000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 60_000).toFixed(0)} min`;

function printResult(name: string, r: SimResult): void {
  const o = r.options;
  const v = r.vaults;
  const peak = Math.max(...v.map((x) => x.peakPerSecond));
  const peak10 = Math.max(...v.map((x) => x.peak10s));
  const mean = v.reduce((n, x) => n + x.meanPerSecond, 0) / v.length;
  const cu = r.latencyMs.createOrUpdate;
  const od = r.latencyMs.onDemandCheck;
  const perCheck = r.periodicChecksDone > 0 ? r.callsBySource.periodic / r.periodicChecksDone : 0;
  console.log(`  ${name}`);
  console.log(
    `    Key Vault per vault: mean ${mean.toFixed(1)}/s, peak ${peak}/s (HSM queue rate ${o.budgetPerSecond}/s, vault limit ${
      o.vaultLimitPer10s / 10
    }/s), busiest 10 s ${peak10} (limit ${o.vaultLimitPer10s})`,
  );
  console.log(
    `    calls: periodic ${fmt(r.callsBySource.periodic)}, rotation ${fmt(r.callsBySource.rotation)}, user ${fmt(
      r.callsBySource.user,
    )}, follow-up ${fmt(r.callsBySource.followUp)}, on-demand ${fmt(r.callsBySource.onDemand)}; ${perCheck.toFixed(
      2,
    )} unwraps per periodic check${r.cache.sizeEvictions > 0 ? ` (${fmt(r.cache.sizeEvictions)} size evictions)` : ''}`,
  );
  console.log(
    `    create/update (Key Vault part): p50 ${sec(cu.p50)}, p95 ${sec(cu.p95)}, p99 ${sec(cu.p99)}, max ${sec(
      cu.max,
    )} (${fmt(cu.count)}); on-demand check: p50 ${sec(od.p50)}, p99 ${sec(od.p99)}, max ${sec(od.max)}; made during the outage: max ${sec(
      r.latencyMs.duringOutage.max,
    )}`,
  );
  console.log(
    `    periodic checks done ${fmt(r.periodicChecksDone)} (due about ${fmt(
      (o.tenants * o.ancsPerTenant * 1440) / o.checkIntervalMinutes,
    )}), backlog at end ${fmt(r.periodicBacklogAtEnd)}, longest queue ${fmt(r.maxQueueLength)}; rotation ${fmt(
      r.rotation.rewrapped,
    )}/${fmt(r.rotation.keys)} re-wrapped${
      r.rotation.finishedAfterMs === undefined ? ' (not finished in the day)' : ` in ${sec(r.rotation.finishedAfterMs)}`
    }  [${(r.wallMs / 1000).toFixed(1)} s]`,
  );
  console.log(`    longest queue per hour: ${r.hourlyMaxQueue.map((n) => fmt(n)).join(' ')}`);
}

async function main(): Promise<void> {
  await printCallsPerOperation();
  printModel();
  const tenants = Number(value('--tenants') ?? 100_000);
  const only = value('--only')?.split(',');
  console.log(
    `Simulated day: ${fmt(tenants)} tenants, ${fmt(tenants * 10)} ANCs, checks every 6 h, KEK renewal + re-wrap at 02:00,` +
      ' all workers down 14:00-14:30, 4 workers, Key Vault call 25 ms',
  );
  for (const { name, options } of variants(tenants)) {
    if (only && !only.includes(name.split(' ')[0] as string)) continue;
    printResult(name, await simulateDay(options));
  }
}

await main();

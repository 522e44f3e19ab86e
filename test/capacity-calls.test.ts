/**
 * The capacity model's inputs are measured, not assumed: this runs every operation against the Key Vault
 * emulator (real workflows, activities, PostgreSQL and the Azure provider over HTTPS) and requires the
 * counts to equal the model's. A change that adds or removes a Key Vault call fails here until
 * test/capacity/model.ts and docs/CAPACITY.md are updated.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_TENANT_KEY_CACHE_LIMITS } from '../activities/kek/tenant-key-cache';
import { measureCallsPerOperation, type CallCounts } from './capacity/measure-calls';
import {
  dailyCalls,
  DEFAULT_WORKLOAD,
  defaultBudgetPerSecond,
  MEASURED_CALLS,
  MEASURED_CALLS_WARM_CACHE,
  periodicHitRatio,
  readCalls,
  tenantsAtSaturation,
  vaultLimitPerSecond,
} from './capacity/model';

/**
 * HSM calls (unwrap, wrap, create, ...) must match exactly. Metadata reads are per rotation run or per
 * worker minute, not per tenant, and one more or less depends on when the worker's one-minute KEK
 * directory refreshes during the run: they may differ by one.
 */
function expectMatches(measured: Record<string, CallCounts>, model: Record<string, CallCounts>): void {
  const hsmOnly = (c: CallCounts) => ({ ...c, get: undefined, list: undefined, listVersions: undefined });
  for (const [op, counts] of Object.entries(model)) {
    const got = measured[op] ?? {};
    expect({ op, ...hsmOnly(got) }).toEqual({ op, ...hsmOnly(counts) });
    expect(Math.abs(readCalls(got) - readCalls(counts)), `${op}: reads ${JSON.stringify(got)}`).toBeLessThanOrEqual(1);
  }
  expect(Object.keys(measured).sort()).toEqual(Object.keys(model).sort());
}

describe('Key Vault calls per operation (emulator, time-skipping server, PostgreSQL)', () => {
  it('are the ones the capacity model uses (no tenant-key cache)', async () => {
    expectMatches(await measureCallsPerOperation(), MEASURED_CALLS);
  }, 240_000);

  it('with the tenant-key cache, uses of a recently unwrapped key cost no call', async () => {
    expectMatches(
      await measureCallsPerOperation({ cache: DEFAULT_TENANT_KEY_CACHE_LIMITS }),
      MEASURED_CALLS_WARM_CACHE,
    );
  }, 240_000);
});

describe('capacity model arithmetic', () => {
  it('100,000 tenants with 10 ANCs checked every 6 hours need 46.3 unwraps/s from periodic checks', () => {
    const day = dailyCalls({ ...DEFAULT_WORKLOAD, tenants: 100_000 });
    expect(day.periodicChecks).toBe(4_000_000);
    expect(day.periodicChecks / 86_400).toBeCloseTo(46.3, 1);
    expect(day.kekRenewalDayExtra).toBe(100_000 + 1);
    // Every source is counted once in the total.
    expect(day.hsmTotal).toBeCloseTo(
      day.periodicChecks + day.onDemandChecks + day.creates + day.updates + day.tenantKeyReplacements,
      6,
    );
  });

  it('the vault limits per key type and size, and the default budget (half of it)', () => {
    expect(vaultLimitPerSecond('RSA-HSM', 3072)).toBe(50);
    expect(vaultLimitPerSecond('RSA-HSM', 2048)).toBe(200);
    expect(vaultLimitPerSecond('RSA-HSM', 4096)).toBe(25);
    expect(defaultBudgetPerSecond(3072)).toBe(25);
  });

  it('saturation grows with vaults and with the cache hit ratio', () => {
    const one = tenantsAtSaturation(DEFAULT_WORKLOAD, 25);
    expect(tenantsAtSaturation(DEFAULT_WORKLOAD, 25, 4)).toBeGreaterThanOrEqual(4 * one - 4);
    const cached = tenantsAtSaturation({ ...DEFAULT_WORKLOAD, periodicCacheHitRatio: 0.5 }, 25);
    expect(cached).toBeGreaterThan(one * 1.8);
    // 25 calls/s carry about 50,000 tenants of 10 ANCs at a 6-hour interval.
    expect(one).toBeGreaterThan(50_000);
    expect(one).toBeLessThan(54_000);
  });

  it('hit ratio of spread periodic checks: small for a 5-minute cache, higher with fewer workers or longer ages', () => {
    const base = { ancsPerTenant: 10, checkIntervalMinutes: 360, cacheMaxAgeMinutes: 5, maxUses: 1000, workers: 4 };
    expect(periodicHitRatio(base)).toBeCloseTo(0.0336, 3);
    expect(periodicHitRatio({ ...base, workers: 1 })).toBeGreaterThan(periodicHitRatio(base));
    expect(periodicHitRatio({ ...base, cacheMaxAgeMinutes: 60 })).toBeGreaterThan(periodicHitRatio(base));
    expect(periodicHitRatio({ ...base, maxUses: 0 })).toBe(0);
  });
});

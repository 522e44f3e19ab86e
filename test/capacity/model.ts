/**
 * The capacity model: Key Vault requests per day for a fleet, against the vault's limits.
 *
 * Its inputs are the requests per operation MEASURED at the Key Vault emulator
 * (test/capacity/measure-calls.ts; test/capacity-calls.test.ts keeps {@link MEASURED_CALLS} equal to a
 * fresh measurement). Everything else here is arithmetic over those counts, documented in
 * docs/CAPACITY.md.
 */
import type { CallCounts, MeasuredOperation } from './measure-calls';

/** Key Vault requests per operation, as measured (see docs/CAPACITY.md for what each step includes). */
export const MEASURED_CALLS: Record<MeasuredOperation, CallCounts> = {
  // envelope unwrap + follow-up check's tenant-key unwrap; the new tenant key is wrapped locally
  createFirstAncOfTenant: { unwrapkey: 2 },
  // envelope unwrap + tenant-key unwrap (to seal) + follow-up check's tenant-key unwrap
  createAnc: { unwrapkey: 3 },
  updatePassword: { unwrapkey: 3 },
  healthCheckOnDemand: { unwrapkey: 1 },
  healthCheckPeriodic: { unwrapkey: 1 },
  deleteAnc: {},
  deactivateTenant: {},
  reactivateTenant: {},
  purgeTenant: {},
  kekDirectoryRefresh: { listVersions: 1 },
  rotationNothingDue: { listVersions: 2 },
  kekRenewal: { create: 1, listVersions: 2 },
  rewrapPerTenantKey: { unwrapkey: 1 },
  replacementRun: { listVersions: 4 },
  replacePerTenantKey: { unwrapkey: 1 },
};

/**
 * The same operations with the worker's tenant-key cache on (default limits) and the tenant's key used on
 * that worker within the entry's age (5 minutes): the best case. A use after the entry expired costs
 * what {@link MEASURED_CALLS} says.
 */
export const MEASURED_CALLS_WARM_CACHE: Record<MeasuredOperation, CallCounts> = {
  ...MEASURED_CALLS,
  // The new tenant key goes into the cache when its row commits: only the password envelope.
  createFirstAncOfTenant: { unwrapkey: 1 },
  // Only the password envelope.
  createAnc: { unwrapkey: 1 },
  updatePassword: { unwrapkey: 1 },
  healthCheckOnDemand: {},
  healthCheckPeriodic: {},
  rewrapPerTenantKey: {},
};

/** Requests that use the KEK's private key in the HSM (what the per-key-type limit counts). */
export function hsmCalls(counts: CallCounts): number {
  return (counts.unwrapkey ?? 0) + (counts.wrapkey ?? 0) + (counts.decrypt ?? 0) + (counts.encrypt ?? 0);
}

/** Requests that only read key metadata (GET, list). */
export function readCalls(counts: CallCounts): number {
  return (counts.get ?? 0) + (counts.list ?? 0) + (counts.listVersions ?? 0);
}

export type KeyProtection = 'RSA-HSM' | 'RSA';
export type RsaKeySize = 2048 | 3072 | 4096;

/**
 * Key Vault (vault resource type) key transaction limits: maximum transactions in 10 seconds, per vault
 * per region. Source: https://learn.microsoft.com/en-us/azure/key-vault/general/service-limits
 * (also /work/shared/REFERENCE.md). "other" is every transaction on the key but CREATE (unwrap, GET, ...).
 */
export const KEY_VAULT_LIMITS_PER_10S: Record<KeyProtection, Record<RsaKeySize, { create: number; other: number }>> = {
  'RSA-HSM': {
    2048: { create: 10, other: 2000 },
    3072: { create: 10, other: 500 },
    4096: { create: 10, other: 250 },
  },
  RSA: {
    2048: { create: 20, other: 4000 },
    3072: { create: 20, other: 1000 },
    4096: { create: 20, other: 500 },
  },
};

/**
 * All transactions of one type in a subscription: five times the per-vault limit
 * (https://learn.microsoft.com/en-us/azure/key-vault/general/overview-throttling).
 */
export const SUBSCRIPTION_LIMIT_FACTOR = 5;

/** Key Vault's per-vault limit for a key, in calls per second. */
export function vaultLimitPerSecond(protection: KeyProtection, size: RsaKeySize): number {
  return KEY_VAULT_LIMITS_PER_10S[protection][size].other / 10;
}

/** The worker's default budget (KEYVAULT_HSM_OPS_PER_SECOND): half the vault's limit. */
export function defaultBudgetPerSecond(size: RsaKeySize): number {
  return vaultLimitPerSecond('RSA-HSM', size) / 2;
}

export interface Workload {
  tenants: number;
  ancsPerTenant: number;
  /** HEALTH_CHECK_INTERVAL_MINUTES. */
  checkIntervalMinutes: number;
  /** Password updates per ANC per year (each is followed by a health check). */
  updatesPerAncPerYear: number;
  /** New ANCs per day, as a fraction of the fleet (churn); each is followed by a health check. */
  createsPerDayFraction: number;
  /** On-demand checks per ANC per day. */
  onDemandChecksPerAncPerDay: number;
  /** Worker processes (each refreshes its KEK directory at most once a minute). */
  workers: number;
  /**
   * Fraction of periodic checks whose tenant key is already in the worker's cache (0 without the
   * cache; see {@link periodicHitRatio}).
   */
  periodicCacheHitRatio: number;
}

export const DEFAULT_WORKLOAD: Omit<Workload, 'tenants'> = {
  ancsPerTenant: 10,
  checkIntervalMinutes: 360,
  updatesPerAncPerYear: 4,
  createsPerDayFraction: 0.001,
  onDemandChecksPerAncPerDay: 0.01,
  workers: 4,
  periodicCacheHitRatio: 0,
};

export interface DailyCalls {
  /** HSM calls (unwraps and creates) per day, by source. */
  periodicChecks: number;
  onDemandChecks: number;
  creates: number;
  updates: number;
  /** Tenant keys replaced 12 months after they were made: spread over the year on average. */
  tenantKeyReplacements: number;
  /** HSM calls on an ordinary day. */
  hsmTotal: number;
  /** Extra HSM calls on the day of a KEK renewal (every tenant key re-wrapped, once a year). */
  kekRenewalDayExtra: number;
  /** Metadata reads per day (KEK directory, rotation runs, keyring). */
  reads: number;
}

const DAY_MINUTES = 24 * 60;

/**
 * Key Vault calls per day for a workload. Formulas (per day, N tenants, M ANCs per tenant, c checks per ANC
 * per day = 1440 / interval):
 *   periodic    = N·M·c·(1 − hit)·unwrap(check)
 *   on-demand   = N·M·d·unwrap(check)
 *   creates     = N·M·f·unwrap(create)              (f = daily churn fraction)
 *   updates     = N·M·u/365·unwrap(update)
 *   replacement = N/365·unwrap(replace per key)     (keys made evenly over the year)
 *   KEK renewal = N·unwrap(rewrap per key) + 1 create, on one day a year
 *   reads       = W·1440·directory + rotation run + 24 keyring refreshes
 */
export function dailyCalls(w: Workload, calls = MEASURED_CALLS): DailyCalls {
  const ancs = w.tenants * w.ancsPerTenant;
  const checksPerAncPerDay = DAY_MINUTES / w.checkIntervalMinutes;
  const periodicChecks =
    ancs * checksPerAncPerDay * (1 - w.periodicCacheHitRatio) * hsmCalls(calls.healthCheckPeriodic);
  const onDemandChecks = ancs * w.onDemandChecksPerAncPerDay * hsmCalls(calls.healthCheckOnDemand);
  const creates = ancs * w.createsPerDayFraction * hsmCalls(calls.createAnc);
  const updates = ((ancs * w.updatesPerAncPerYear) / 365) * hsmCalls(calls.updatePassword);
  const tenantKeyReplacements = (w.tenants / 365) * hsmCalls(calls.replacePerTenantKey);
  const kekRenewalDayExtra =
    w.tenants * hsmCalls(calls.rewrapPerTenantKey) + (calls.kekRenewal.create ?? 0) + hsmCalls(calls.kekRenewal);
  const reads =
    w.workers * DAY_MINUTES * readCalls(calls.kekDirectoryRefresh) +
    readCalls(calls.rotationNothingDue) +
    24 * readCalls(calls.kekDirectoryRefresh);
  return {
    periodicChecks,
    onDemandChecks,
    creates,
    updates,
    tenantKeyReplacements,
    hsmTotal: periodicChecks + onDemandChecks + creates + updates + tenantKeyReplacements,
    kekRenewalDayExtra,
    reads,
  };
}

/**
 * Expected cache hit ratio of periodic checks when each ANC's check falls at its own point of the
 * interval (spread by a hash of the ANC id) and is routed to one of `workers` workers at random.
 * A tenant's checks then reach one worker as a Poisson stream of rate M/(I·W); each miss keeps the key
 * for `maxAge`, during which M·A/(I·W) further checks hit on average (capped by `maxUses`), so
 * hit = x / (1 + x) with x = min(M·A/(I·W), maxUses).
 */
export function periodicHitRatio(args: {
  ancsPerTenant: number;
  checkIntervalMinutes: number;
  cacheMaxAgeMinutes: number;
  maxUses: number;
  workers: number;
}): number {
  const x = Math.min(
    (args.ancsPerTenant * args.cacheMaxAgeMinutes) / (args.checkIntervalMinutes * args.workers),
    args.maxUses,
  );
  return x / (1 + x);
}

/** Tenants (with `ancsPerTenant` ANCs) one vault carries before the day's HSM calls reach `budgetPerSecond`. */
export function tenantsAtSaturation(
  w: Omit<Workload, 'tenants'>,
  budgetPerSecond: number,
  vaults = 1,
  calls = MEASURED_CALLS,
): number {
  const perTenant = dailyCalls({ ...w, tenants: 1 }, calls).hsmTotal;
  return Math.floor((budgetPerSecond * 86_400 * vaults) / perTenant);
}

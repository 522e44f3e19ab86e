/**
 * The capacity simulation's building blocks and its conclusions, at a scale a test can afford: the HSM
 * queue model keeps its rate and lane order; a simulated day shows what the budget, the cache, the
 * priorities and the spreading each do. The full-scale figures come from `npm run bench:capacity`.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_TENANT_KEY_CACHE_LIMITS } from '../activities/kek/tenant-key-cache';
import { TokenBucketQueue, type Lane } from './capacity/sim/hsm-queue';
import { simulateDay, type SimOptions } from './capacity/sim/simulation';

describe('HSM queue model (token bucket with priority lanes)', () => {
  /** Submits `lanes` at t=0 and drives dispatch by the queue's own wake-ups; returns start times by task. */
  function drain(queue: TokenBucketQueue, lanes: Lane[]): { lane: Lane; at: number; i: number }[] {
    const started: { lane: Lane; at: number; i: number }[] = [];
    lanes.forEach((lane, i) => queue.submit({ lane, start: (at) => started.push({ lane, at, i }) }, 0));
    while (queue.wakeAtMs !== undefined) queue.dispatch(queue.wakeAtMs);
    return started;
  }

  it('starts a burst of `rate` at once, then one task per 1/rate seconds', () => {
    const started = drain(new TokenBucketQueue({ ratePerSecond: 10, priorities: false }), Array(30).fill(5));
    expect(started).toHaveLength(30);
    expect(started.filter((s) => s.at === 0)).toHaveLength(10);
    // After the burst: 10 per second, never more in any one-second window than burst + rate.
    expect(started[29]?.at).toBeCloseTo(2000, 0);
    for (const s of started)
      expect(started.filter((x) => x.at >= s.at && x.at < s.at + 1000).length).toBeLessThanOrEqual(20);
  });

  it('with priorities, lane 1 goes first, then 2, 3 and 5; with one FIFO, arrival order', () => {
    const lanes: Lane[] = [5, 5, 3, 1, 2, 5, 1, 3];
    const prioritized = drain(new TokenBucketQueue({ ratePerSecond: 1, priorities: true }), lanes);
    // The first task takes the single token on arrival; the rest wait and leave by lane.
    expect(prioritized.map((s) => s.lane)).toEqual([5, 1, 1, 2, 3, 3, 5, 5]);
    const fifo = drain(new TokenBucketQueue({ ratePerSecond: 1, priorities: false }), lanes);
    expect(fifo.map((s) => s.i)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('dispatches nothing while paused, and resumes with the tokens saved up to the burst', () => {
    const queue = new TokenBucketQueue({ ratePerSecond: 5, priorities: true });
    queue.setPaused(true, 0);
    const started: number[] = [];
    for (let i = 0; i < 12; i++) queue.submit({ lane: 1, start: (at) => started.push(at) }, 100);
    expect(started).toEqual([]);
    queue.setPaused(false, 60_000);
    expect(started).toHaveLength(5);
    expect(started.every((t) => t === 60_000)).toBe(true);
  });
});

describe('simulated day (2,000 tenants, 20,000 ANCs, budget below the periodic demand)', () => {
  // 20,000 ANCs checked every 30 minutes want 11.1 unwraps/s; the budget is 8/s.
  const base: SimOptions = {
    tenants: 2_000,
    ancsPerTenant: 10,
    checkIntervalMinutes: 30,
    budgetPerSecond: 8,
    vaultLimitPer10s: 160,
    vaults: 1,
    workers: 2,
    priorities: false,
    cache: undefined,
    scheduling: 'slots',
    kvLatencyMs: 25,
    rotationAtMs: 3_600_000,
    rotationConcurrency: 16,
    createsPerDay: 2_000,
    updatesPerDay: 2_000,
    onDemandChecksPerDay: 2_000,
    durationMs: 4 * 3_600_000,
    seed: 7,
  };

  it('without priorities user operations queue behind the checks; with them they keep their latency', async () => {
    const fifo = await simulateDay(base);
    const lanes = await simulateDay({ ...base, priorities: true });
    for (const r of [fifo, lanes]) {
      // The queue never lets more than burst + rate through in a second, nor the 10-second budget be beaten.
      expect(r.vaults[0]?.peakPerSecond).toBeLessThanOrEqual(2 * base.budgetPerSecond);
      expect(r.vaults[0]?.peak10s).toBeLessThanOrEqual(11 * base.budgetPerSecond);
      expect(r.vaults[0]?.meanPerSecond).toBeGreaterThan(0.95 * base.budgetPerSecond);
      expect(r.latencyMs.createOrUpdate.count).toBeGreaterThan(100);
    }
    expect(fifo.latencyMs.createOrUpdate.p50).toBeGreaterThan(60_000);
    // Two Key Vault calls of 25 ms each, waiting only for tokens and the few other user operations.
    expect(lanes.latencyMs.createOrUpdate.p99).toBeLessThan(1000);
    expect(lanes.latencyMs.onDemandCheck.p99).toBeLessThan(1000);
    expect(lanes.latencyMs.createOrUpdate.p99 * 100).toBeLessThan(fifo.latencyMs.createOrUpdate.p50);
    // The rotation (lane 3) goes before the periodic checks (lane 5), so it finishes; in the FIFO it crawls.
    expect(lanes.rotation.rewrapped).toBe(base.tenants);
    expect(lanes.rotation.finishedAfterMs).toBeLessThan(fifo.rotation.finishedAfterMs ?? Infinity);
    // What the budget cannot carry is periodic checks, left waiting.
    expect(lanes.periodicBacklogAtEnd).toBeGreaterThan(0);
  }, 120_000);

  it("the cache saves unwraps when a tenant's checks come close together, and none are served past their limits", async () => {
    const cache = DEFAULT_TENANT_KEY_CACHE_LIMITS;
    const light = {
      ...base,
      budgetPerSecond: 20,
      vaultLimitPer10s: 400,
      priorities: true,
      rotationAtMs: undefined,
      durationMs: 2 * 3_600_000,
    };
    const off = await simulateDay(light);
    const spread = await simulateDay({ ...light, cache });
    const byTenant = await simulateDay({ ...light, cache, scheduling: 'slots-by-tenant' });
    // Without the cache: one unwrap per check.
    expect(off.callsBySource.periodic).toBe(off.periodicChecksDone);
    // Spread by ANC with 5-minute entries: a 30-minute interval puts some of a tenant's checks together.
    expect(spread.callsBySource.periodic).toBeLessThan(0.9 * spread.periodicChecksDone);
    // A tenant's ANCs together: about one unwrap per tenant per worker and interval.
    expect(byTenant.callsBySource.periodic).toBeLessThan(0.35 * byTenant.periodicChecksDone);
    expect(byTenant.cache.sizeEvictions).toBe(0);
    // An entry lives at most 5 minutes: the checks of one tenant a whole interval apart always miss,
    // so the calls can never fall below one per tenant, worker in use and interval.
    const intervals = (light.durationMs / (light.checkIntervalMinutes * 60_000)) * light.tenants;
    expect(byTenant.callsBySource.periodic).toBeGreaterThanOrEqual(intervals * 0.95);
  }, 120_000);

  it('after a worker outage, slots spread the late checks; a fixed interval fires them all at once', async () => {
    const outage = { startMs: 3_600_000, durationMs: 15 * 60_000 };
    const light = {
      ...base,
      budgetPerSecond: 20,
      vaultLimitPer10s: 400,
      priorities: true,
      rotationAtMs: undefined,
      outage,
    };
    const fixed = await simulateDay({ ...light, scheduling: 'fixed-interval' });
    const slots = await simulateDay(light);
    // The fixed interval keeps the bunch: every 30 minutes after the outage the same checks fire together.
    const lateHours = (r: typeof fixed) => Math.max(...r.hourlyMaxQueue.slice(2));
    expect(lateHours(fixed)).toBeGreaterThan(1000);
    expect(lateHours(slots)).toBeLessThan(lateHours(fixed) / 10);
    // User operations made outside the outage are not held up by the catch-up (they have lane 1).
    expect(slots.latencyMs.createOrUpdate.p99).toBeLessThan(1000);
    expect(slots.latencyMs.duringOutage.max).toBeGreaterThan(60_000);
  }, 120_000);
});

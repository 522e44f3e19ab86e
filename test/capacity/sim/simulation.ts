/**
 * A simulated day of the service at fleet scale, against a counting Key Vault stand-in.
 *
 * Real code under test: the tenant-key cache (activities/kek/tenant-key-cache.ts, one per worker, its
 * clock driven by simulated time) and the periodic health-check slot function (workflows/health-slot.ts).
 * Modelled: the HSM task queue (a token bucket with priority lanes, ./hsm-queue.ts), Key Vault (a fixed
 * call latency and a per-second counter per vault), workers (a task lands on one at random, as Temporal
 * hands tasks to whichever worker polls), the rotation (KEK renewal, then one unwrap per tenant key with
 * a bounded number in flight), user operations (Poisson arrivals) and an optional worker outage.
 *
 * Key Vault calls per operation are the measured ones (test/capacity/model.ts): a create or update is an
 * envelope unwrap and a tenant-key unwrap (through the cache), then a follow-up check; a check is one
 * tenant-key unwrap (through the cache); a re-wrap is one unwrap.
 *
 * Event-driven on a simulated clock: nothing ticks; each step jumps to the next event.
 */
import { TenantKeyCache, type TenantKeyCacheLimits, type TenantKeyRef } from '../../../activities/kek/tenant-key-cache';
import { nextHealthCheckSlot, unitHash } from '../../../workflows/health-slot';
import { TokenBucketQueue, type Lane } from './hsm-queue';

export type Scheduling =
  /** The timer restarts at each wake, a fixed interval (the service before spreading). */
  | 'fixed-interval'
  /** nextHealthCheckSlot with the ANC's workflow id: phases spread by ANC. */
  | 'slots'
  /** nextHealthCheckSlot with the tenant's id: a tenant's ANCs check together (a what-if). */
  | 'slots-by-tenant';

export interface SimOptions {
  tenants: number;
  ancsPerTenant: number;
  checkIntervalMinutes: number;
  /** HSM task-queue budget per vault (dispatches per second). */
  budgetPerSecond: number;
  /** Key Vault's own limit per vault, calls per 10 seconds (reported against). */
  vaultLimitPer10s: number;
  vaults: number;
  workers: number;
  priorities: boolean;
  /** Tenant-key cache limits per worker; undefined turns the cache off. */
  cache: TenantKeyCacheLimits | undefined;
  scheduling: Scheduling;
  kvLatencyMs: number;
  /** When the rotation (KEK renewal and re-wrap of every tenant key) starts; undefined for none. */
  rotationAtMs: number | undefined;
  rotationConcurrency: number;
  /** All workers down for a while (no dispatch, timers due in it fire when it ends). */
  outage?: { startMs: number; durationMs: number };
  createsPerDay: number;
  updatesPerDay: number;
  onDemandChecksPerDay: number;
  durationMs: number;
  seed: number;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export interface VaultFigures {
  calls: number;
  meanPerSecond: number;
  peakPerSecond: number;
  /** Busiest 10-second window, as calls per 10 s. */
  peak10s: number;
}

export interface SimResult {
  options: SimOptions;
  vaults: VaultFigures[];
  /** Key Vault calls by source. */
  callsBySource: { user: number; followUp: number; onDemand: number; periodic: number; rotation: number };
  periodicChecksDone: number;
  /** Periodic checks waiting in the queue (or not yet started) at the end of the day. */
  periodicBacklogAtEnd: number;
  /** Key Vault part of user operations (queue wait + calls), for requests made outside the outage. */
  latencyMs: { createOrUpdate: LatencySummary; onDemandCheck: LatencySummary; duringOutage: LatencySummary };
  rotation: { keys: number; rewrapped: number; finishedAfterMs: number | undefined };
  cache: { hits: number; misses: number; evictions: number; sizeEvictions: number };
  maxQueueLength: number;
  /** Longest HSM queue in each hour of the day. */
  hourlyMaxQueue: number[];
  wallMs: number;
}

const DAY_MS = 86_400_000;
/** Microtask turns that settle a cache lookup (checked after each drain: a shortfall throws). */
const DRAIN_TICKS = Number(process.env.SIM_DRAIN_TICKS ?? 6);

/** A seeded PRNG (mulberry32): the same options give the same day. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Min-heap of ANC timers (one pending timer per ANC at most), on typed arrays. */
class AncTimers {
  private readonly at: Float64Array;
  private readonly heap: Int32Array;
  size = 0;
  constructor(n: number) {
    this.at = new Float64Array(n);
    this.heap = new Int32Array(n);
  }
  peekTime(): number {
    return this.size > 0 ? (this.at[this.heap[0] as number] as number) : Infinity;
  }
  push(anc: number, atMs: number): void {
    this.at[anc] = atMs;
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = this.heap[parent] as number;
      if ((this.at[p] as number) <= atMs) break;
      this.heap[i] = p;
      i = parent;
    }
    this.heap[i] = anc;
  }
  pop(): number {
    const top = this.heap[0] as number;
    const last = this.heap[--this.size] as number;
    const t = this.at[last] as number;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= this.size) break;
      const r = l + 1;
      let c = l;
      if (r < this.size && (this.at[this.heap[r] as number] as number) < (this.at[this.heap[l] as number] as number))
        c = r;
      const cv = this.heap[c] as number;
      if ((this.at[cv] as number) >= t) break;
      this.heap[i] = cv;
      i = c;
    }
    this.heap[i] = last;
    return top;
  }
}

/** Min-heap of the few other events (arrivals, rotation start, outage), ordered by time then insertion. */
class EventHeap {
  private readonly items: { t: number; seq: number; fn: () => void }[] = [];
  private seq = 0;
  peekTime(): number {
    return this.items[0]?.t ?? Infinity;
  }
  push(t: number, fn: () => void): void {
    const item = { t, seq: this.seq++, fn };
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pi = a[p] as typeof item;
      if (pi.t < t || (pi.t === t && pi.seq < item.seq)) break;
      a[i] = pi;
      i = p;
    }
    a[i] = item;
  }
  pop(): () => void {
    const a = this.items;
    const top = a[0] as (typeof a)[number];
    const last = a.pop() as (typeof a)[number];
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const r = l + 1;
        const less = (x: typeof last, y: typeof last) => x.t < y.t || (x.t === y.t && x.seq < y.seq);
        const c = r < a.length && less(a[r] as typeof last, a[l] as typeof last) ? r : l;
        if (!less(a[c] as typeof last, last)) break;
        a[i] = a[c] as typeof last;
        i = c;
      }
      a[i] = last;
    }
    return top.fn;
  }
}

function summarize(values: number[]): LatencySummary {
  if (values.length === 0) return { count: 0, p50: 0, p95: 0, p99: 0, max: 0 };
  const s = Float64Array.from(values).sort();
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] as number;
  return { count: s.length, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: s[s.length - 1] as number };
}

type Source = keyof SimResult['callsBySource'];

export async function simulateDay(options: SimOptions): Promise<SimResult> {
  const wallStart = performance.now();
  const o = options;
  const rand = prng(o.seed);
  const M = o.ancsPerTenant;
  const ancCount = o.tenants * M;
  const intervalMs = o.checkIntervalMinutes * 60_000;
  const end = o.durationMs;
  let now = 0;

  // ---- Key Vault stand-in: one counter per simulated second and vault.
  const seconds = Math.ceil(end / 1000) + 60;
  const perSecond = Array.from({ length: o.vaults }, () => new Uint32Array(seconds));
  const callsBySource: SimResult['callsBySource'] = { user: 0, followUp: 0, onDemand: 0, periodic: 0, rotation: 0 };
  const completionAt: number[] = [];
  const completionFn: (() => void)[] = [];
  let completionHead = 0;

  const queues = Array.from(
    { length: o.vaults },
    () => new TokenBucketQueue({ ratePerSecond: o.budgetPerSecond, priorities: o.priorities }),
  );
  /** Longest queue seen in each simulated hour (all vaults' queues together). */
  const hourlyMaxQueue = new Array<number>(Math.ceil(end / 3_600_000)).fill(0);
  const vaultOf = (tenant: number) => (o.vaults === 1 ? 0 : Math.floor(unitHash(`tenant-${tenant}|vault`) * o.vaults));

  /** One Key Vault call at `t` (the activity already holds its dispatch); `done` runs when it returns. */
  const callKeyVault = (vault: number, source: Source, t: number, done: () => void) => {
    const s = Math.floor(t / 1000);
    const counts = perSecond[vault] as Uint32Array;
    if (s < counts.length) counts[s] = (counts[s] as number) + 1;
    callsBySource[source] += 1;
    completionAt.push(t + o.kvLatencyMs);
    completionFn.push(done);
  };

  /**
   * An activity on the HSM task queue: it waits for a dispatch (a token of its vault's queue, in its
   * lane), then `work` runs at the dispatch time.
   */
  const hsmActivity = (tenant: number, lane: Lane, work: (vault: number, t: number) => void) => {
    const vault = vaultOf(tenant);
    (queues[vault] as TokenBucketQueue).submit({ lane, start: (t) => work(vault, t) }, now);
    const hour = Math.floor(now / 3_600_000);
    let waiting = 0;
    for (const q of queues) waiting += q.waiting;
    if (waiting > (hourlyMaxQueue[hour] ?? Infinity)) hourlyMaxQueue[hour] = waiting;
  };

  /** An activity whose one Key Vault call is not a tenant key (password envelope, KEK create, re-wrap). */
  const keyVaultActivity = (tenant: number, lane: Lane, source: Source, done: () => void) =>
    hsmActivity(tenant, lane, (vault, t) => callKeyVault(vault, source, t, done));

  // ---- Tenant keys: what identifies each tenant's wrapped key (changes when it is re-wrapped).
  const refs: TenantKeyRef[] = Array.from({ length: o.tenants }, (_, k) => ({
    tenantId: `tenant-${k}`,
    tenantKeyVersion: 1,
    kekVersion: 'kek-v1',
    wrappedKey: Buffer.from(`wrapped|${k}|kek-v1`),
  }));
  // Each worker's cache is the real TenantKeyCache, sharded by tenant so that its per-lookup sweep
  // (which walks every entry) stays short at this scale. No shard ever evicts for size (checked and
  // reported below), so the hits, misses and ages are those of one cache per worker.
  const shards = o.cache ? Math.max(1, Math.min(256, Math.floor(o.cache.maxEntries / 64))) : 0;
  let sizeEvictions = 0;
  const workerCaches: TenantKeyCache[][] = o.cache
    ? Array.from({ length: o.workers }, () =>
        Array.from(
          { length: shards },
          () =>
            new TenantKeyCache(
              {
                ...(o.cache as TenantKeyCacheLimits),
                maxEntries: Math.ceil((o.cache as TenantKeyCacheLimits).maxEntries / shards),
              },
              () => now,
              (reason) => {
                if (reason === 'size') sizeEvictions += 1;
              },
            ),
        ),
      )
    : [];
  const cacheOf = (worker: number, tenant: number) =>
    (workerCaches[worker] as TenantKeyCache[])[tenant % shards] as TenantKeyCache;
  const caches = workerCaches.flat();
  let mustSettle = 0;
  let drainNeeded = false;

  /**
   * An activity that needs the tenant key: dispatched like any HSM-bound activity (a cache hit still
   * takes its dispatch, as on the service's HSM task queue), then the worker it landed on looks in its
   * cache and calls Key Vault only on a miss. `done` runs when the worker has the key.
   */
  const tenantKeyActivity = (tenant: number, lane: Lane, source: Source, done: () => void) =>
    hsmActivity(tenant, lane, (vault, t) => {
      if (workerCaches.length === 0) {
        callKeyVault(vault, source, t, done);
        return;
      }
      const cache = cacheOf(Math.floor(rand() * o.workers), tenant);
      const hitsBefore = cache.stats().hits;
      let direct = false;
      drainNeeded = true;
      void cache
        .getOrUnwrap(
          refs[tenant] as TenantKeyRef,
          () =>
            new Promise<Buffer>((resolve) => {
              direct = true;
              callKeyVault(vault, source, t, () => {
                mustSettle += 1;
                drainNeeded = true;
                resolve(Buffer.alloc(32, 7));
              });
            }),
        )
        .then((key) => {
          key.fill(0);
          if (counted) mustSettle -= 1;
          done();
        });
      const counted = direct || cache.stats().hits > hitsBefore;
      if (!direct && counted) mustSettle += 1;
    });

  // ---- Periodic checks.
  const timers = new AncTimers(ancCount);
  const lastCheck = new Float64Array(ancCount).fill(NaN);
  const due = new Float64Array(ancCount);
  const slotId = (anc: number) => {
    const tenant = Math.floor(anc / M);
    return o.scheduling === 'slots-by-tenant' ? `tenant/tenant-${tenant}` : `anc/tenant-${tenant}/anc-${anc % M}`;
  };
  let periodicChecksDone = 0;
  let periodicWaiting = 0;
  const outageStart = o.outage?.startMs ?? Infinity;
  const outageEnd = o.outage ? o.outage.startMs + o.outage.durationMs : -Infinity;

  const planNext = (anc: number, t: number) => {
    if (o.scheduling === 'fixed-interval') {
      timers.push(anc, t + intervalMs);
      return;
    }
    const last = lastCheck[anc] as number;
    const slot = nextHealthCheckSlot({
      id: slotId(anc),
      intervalMs,
      nowMs: t,
      ...(Number.isNaN(last) ? {} : { lastCheckMs: last }),
    });
    due[anc] = slot.atMs;
    timers.push(anc, slot.atMs);
  };

  const runPeriodicCheck = (anc: number) => {
    periodicWaiting += 1;
    tenantKeyActivity(Math.floor(anc / M), 5, 'periodic', () => {
      periodicWaiting -= 1;
      periodicChecksDone += 1;
      lastCheck[anc] = now;
      if (o.scheduling !== 'fixed-interval') planNext(anc, now);
    });
  };

  const onTimer = (anc: number) => {
    if (now >= outageStart && now < outageEnd) {
      // No worker runs the workflow task until the outage ends.
      timers.push(anc, outageEnd);
      return;
    }
    if (o.scheduling === 'fixed-interval') {
      // The workflow's timer restarts at the wake; the check is queued behind any earlier one.
      timers.push(anc, now + intervalMs);
      runPeriodicCheck(anc);
      return;
    }
    const dueMs = due[anc] as number;
    if (now - dueMs > 60_000) {
      const last = lastCheck[anc] as number;
      const slot = nextHealthCheckSlot({
        id: slotId(anc),
        intervalMs,
        nowMs: now,
        dueMs,
        ...(Number.isNaN(last) ? {} : { lastCheckMs: last }),
      });
      due[anc] = slot.atMs;
      timers.push(anc, slot.atMs);
      return;
    }
    runPeriodicCheck(anc);
  };

  for (let anc = 0; anc < ancCount; anc++) {
    if (o.scheduling === 'fixed-interval') timers.push(anc, Math.floor(rand() * intervalMs));
    else planNext(anc, 0);
  }

  // ---- User operations (Poisson arrivals on random ANCs).
  const events = new EventHeap();
  const createOrUpdateLatency: number[] = [];
  const onDemandLatency: number[] = [];
  const duringOutageLatency: number[] = [];
  /** Requests made while the workers are down wait for them: reported apart. */
  const record = (list: number[], started: number) =>
    (started >= outageStart && started < outageEnd ? duringOutageLatency : list).push(now - started);
  const arrivals = (perDay: number, op: (anc: number) => void) => {
    if (perDay <= 0) return;
    const meanGap = DAY_MS / perDay;
    const next = () => {
      op(Math.floor(rand() * ancCount));
      events.push(now - Math.log(1 - rand()) * meanGap, next);
    };
    events.push(-Math.log(1 - rand()) * meanGap, next);
  };
  const changeCredential = (anc: number) => {
    const tenant = Math.floor(anc / M);
    const started = now;
    // The password envelope is unwrapped by Key Vault (never cached), then the tenant key is needed.
    keyVaultActivity(tenant, 1, 'user', () =>
      tenantKeyActivity(tenant, 1, 'user', () => {
        record(createOrUpdateLatency, started);
        tenantKeyActivity(tenant, 2, 'followUp', () => undefined);
      }),
    );
  };
  arrivals(o.createsPerDay, changeCredential);
  arrivals(o.updatesPerDay, changeCredential);
  arrivals(o.onDemandChecksPerDay, (anc) => {
    const started = now;
    tenantKeyActivity(Math.floor(anc / M), 1, 'onDemand', () => record(onDemandLatency, started));
  });

  // ---- Rotation: KEK renewal (one create per vault), then every tenant key re-wrapped, per vault.
  let rewrapped = 0;
  let rotationFinishedAt: number | undefined;
  if (o.rotationAtMs !== undefined) {
    const startAt = o.rotationAtMs;
    events.push(startAt, () => {
      const byVault: number[][] = Array.from({ length: o.vaults }, () => []);
      for (let k = o.tenants - 1; k >= 0; k--) (byVault[vaultOf(k)] as number[]).push(k);
      let vaultsLeft = o.vaults;
      for (const pending of byVault) {
        let inFlight = 0;
        const pump = () => {
          while (inFlight < o.rotationConcurrency && pending.length > 0) {
            const tenant = pending.pop() as number;
            inFlight += 1;
            keyVaultActivity(tenant, 3, 'rotation', () => {
              inFlight -= 1;
              rewrapped += 1;
              // Wrapped again locally with the new version: new bytes; the worker drops what it held.
              refs[tenant] = {
                tenantId: `tenant-${tenant}`,
                tenantKeyVersion: 1,
                kekVersion: 'kek-v2',
                wrappedKey: Buffer.from(`wrapped|${tenant}|kek-v2`),
              };
              if (workerCaches.length > 0)
                cacheOf(Math.floor(rand() * o.workers), tenant).invalidateTenant(`tenant-${tenant}`);
              if (pending.length === 0 && inFlight === 0 && --vaultsLeft === 0) rotationFinishedAt = now - startAt;
              pump();
            });
          }
        };
        // The KEK renewal's create call goes first, through the same queue.
        keyVaultActivity(vaultIndexTenant(byVault, pending), 3, 'rotation', pump);
      }
    });
  }

  // ---- Outage.
  if (o.outage) {
    events.push(outageStart, () => {
      for (const q of queues) q.setPaused(true, now);
    });
    events.push(outageEnd, () => {
      for (const q of queues) q.setPaused(false, now);
    });
  }

  // ---- The event loop.
  for (;;) {
    let t = timers.peekTime();
    let source = 0;
    const c = completionHead < completionAt.length ? (completionAt[completionHead] as number) : Infinity;
    if (c < t) {
      t = c;
      source = 1;
    }
    const e = events.peekTime();
    if (e < t) {
      t = e;
      source = 2;
    }
    let wakeQueue: TokenBucketQueue | undefined;
    for (const q of queues) {
      if (q.wakeAtMs !== undefined && q.wakeAtMs < t) {
        t = q.wakeAtMs;
        source = 3;
        wakeQueue = q;
      }
    }
    if (t > end) break;
    now = t;
    if (source === 0) onTimer(timers.pop());
    else if (source === 1) {
      const fn = completionFn[completionHead] as () => void;
      completionHead += 1;
      if (completionHead > 100_000) {
        completionAt.splice(0, completionHead);
        completionFn.splice(0, completionHead);
        completionHead = 0;
      }
      fn();
    } else if (source === 2) events.pop()();
    else wakeQueue?.dispatch(now);

    if (drainNeeded) {
      // Let the cache's promise continuations run at this simulated instant.
      for (let i = 0; i < DRAIN_TICKS; i++) await null;
      drainNeeded = false;
      if (mustSettle !== 0) throw new Error(`simulation: ${mustSettle} cache lookups did not settle in the drain`);
    }
  }

  const vaults: VaultFigures[] = perSecond.map((counts) => {
    let calls = 0;
    let peak = 0;
    let window = 0;
    let peak10 = 0;
    const last = Math.min(counts.length, Math.ceil(end / 1000));
    for (let s = 0; s < last; s++) {
      const n = counts[s] as number;
      calls += n;
      if (n > peak) peak = n;
      window += n - (s >= 10 ? (counts[s - 10] as number) : 0);
      if (window > peak10) peak10 = window;
    }
    return { calls, meanPerSecond: calls / (end / 1000), peakPerSecond: peak, peak10s: peak10 };
  });
  const cacheStats = caches.reduce(
    (acc, c) => {
      const s = c.stats();
      return { hits: acc.hits + s.hits, misses: acc.misses + s.misses, evictions: acc.evictions + s.evictions };
    },
    { hits: 0, misses: 0, evictions: 0 },
  );
  for (const c of caches) c.clear();
  return {
    options: o,
    vaults,
    callsBySource,
    periodicChecksDone,
    periodicBacklogAtEnd: periodicWaiting,
    latencyMs: {
      createOrUpdate: summarize(createOrUpdateLatency),
      onDemandCheck: summarize(onDemandLatency),
      duringOutage: summarize(duringOutageLatency),
    },
    rotation: { keys: o.rotationAtMs === undefined ? 0 : o.tenants, rewrapped, finishedAfterMs: rotationFinishedAt },
    cache: { ...cacheStats, sizeEvictions },
    maxQueueLength: Math.max(...queues.map((q) => q.maxWaiting)),
    hourlyMaxQueue,
    wallMs: performance.now() - wallStart,
  };
}

/** Any tenant of the vault whose list `pending` is (for routing the vault's KEK create call). */
function vaultIndexTenant(byVault: number[][], pending: number[]): number {
  const any = pending[pending.length - 1];
  if (any === undefined) throw new Error(`vault ${byVault.indexOf(pending)} has no tenants`);
  return any;
}

import { createHash } from 'node:crypto';

/**
 * A bounded in-process cache of unwrapped tenant keys, so that health checks, updates and re-seals
 * of the same tenant do not each cost a Key Vault unwrap.
 *
 * Rules (each enforced here, each tested):
 * - An entry is addressed by vault id, tenant id, tenant key version, KEK version and a SHA-256 fingerprint of
 *   the wrapped key bytes. A lookup therefore only ever answers for the exact wrapped key the caller
 *   read from the database: after a replacement or a re-wrap (by this worker or any other) the row
 *   names new bytes, and the old entry can no longer be hit.
 * - Capped in number (`maxEntries`, least recently used evicted first), age (`maxAgeMs` since the
 *   key was unwrapped, not since last use) and uses (`maxUses` hand-outs, then it is evicted).
 * - The cache owns its buffers: it stores a copy of what it is given and hands out copies, which
 *   the caller zeroes after use as with any unwrapped key. Every buffer it drops (eviction,
 *   invalidation, expiry, `clear()`) is zeroed first.
 * - `invalidateTenant()` drops every entry of a tenant at once; the activities call it when a
 *   tenant key is replaced or re-wrapped, and when the tenant is deactivated or purged.
 * - `maxEntries = 0` turns the cache off: nothing is stored, every lookup is a miss.
 *
 * The clock is injected (milliseconds), so the capacity simulation can drive it with simulated time.
 * Not thread-shared: one instance per worker process.
 */
export interface TenantKeyCacheLimits {
  /** Most entries held; 0 turns the cache off. */
  maxEntries: number;
  /** An entry is dropped this long after the key was unwrapped. */
  maxAgeMs: number;
  /** An entry is dropped after it has been handed out this many times. */
  maxUses: number;
}

/** What identifies one wrapped tenant key. */
export interface TenantKeyRef {
  /** The vault whose KEK wrapped it (absent: "primary"): entries of different vaults never mix. */
  vaultId?: string;
  tenantId: string;
  tenantKeyVersion: number;
  kekVersion: string;
  wrappedKey: Buffer;
}

export interface TenantKeyCacheStats {
  hits: number;
  misses: number;
  /** Entries dropped for any reason: size, age, uses, invalidation, clear. */
  evictions: number;
  /** Entries currently held. */
  entries: number;
}

export type EvictionReason = 'size' | 'age' | 'uses' | 'invalidated' | 'cleared';

interface Flight {
  promise: Promise<Buffer>;
  /** Callers still to copy the result. */
  waiters: number;
}

interface Entry {
  tenantId: string;
  key: Buffer;
  unwrappedAt: number;
  uses: number;
}

export const DEFAULT_TENANT_KEY_CACHE_LIMITS: TenantKeyCacheLimits = {
  maxEntries: 10_000,
  maxAgeMs: 5 * 60_000,
  maxUses: 1_000,
};

export class TenantKeyCache {
  /** Insertion order doubles as recency order: a hit re-inserts its entry at the end. */
  private readonly entries = new Map<string, Entry>();
  /** The same entries in unwrap order, oldest first: an age sweep stops at the first live one. */
  private readonly byAge = new Map<string, Entry>();
  /** Unwraps in progress, so concurrent misses for one key cost one HSM call. */
  private readonly pending = new Map<string, Flight>();
  private counts = { hits: 0, misses: 0, evictions: 0 };
  /** Bumped by every invalidation of a tenant: an unwrap started before it is not stored. */
  private readonly generations = new Map<string, number>();

  constructor(
    readonly limits: TenantKeyCacheLimits,
    private readonly now: () => number = Date.now,
    private readonly onEvict?: (reason: EvictionReason) => void,
  ) {
    for (const [name, value] of Object.entries(limits)) {
      if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer`);
    }
  }

  get enabled(): boolean {
    return this.limits.maxEntries > 0 && this.limits.maxAgeMs > 0 && this.limits.maxUses > 0;
  }

  /**
   * The tenant key in the clear, as a copy the caller owns (and zeroes): from the cache when a live
   * entry exists, otherwise from `unwrap` (the Key Vault call), whose result is stored (as a copy)
   * and handed out. Concurrent lookups of the same missing key share one unwrap.
   */
  async getOrUnwrap(ref: TenantKeyRef, unwrap: () => Promise<Buffer>): Promise<Buffer> {
    const cached = this.get(ref);
    if (cached) return cached;
    if (!this.enabled) return unwrap();
    const id = entryId(ref);
    let flight = this.pending.get(id);
    if (!flight) {
      const generation = this.generations.get(ref.tenantId) ?? 0;
      const started: Flight = {
        waiters: 0,
        promise: unwrap().then((key) => {
          if ((this.generations.get(ref.tenantId) ?? 0) === generation) this.store(id, ref.tenantId, key);
          return key;
        }),
      };
      flight = started;
      this.pending.set(id, started);
      void started.promise.then(
        () => this.pending.delete(id),
        () => this.pending.delete(id),
      );
    }
    // Every caller gets its own copy; the unwrapped original is zeroed once the last one has copied.
    flight.waiters += 1;
    let original: Buffer | undefined;
    try {
      original = await flight.promise;
      return Buffer.from(original);
    } finally {
      flight.waiters -= 1;
      if (flight.waiters === 0) original?.fill(0);
    }
  }

  /** A copy of the cached key, or undefined (counted as a miss). Counts one use on a hit. */
  get(ref: TenantKeyRef): Buffer | undefined {
    this.sweep();
    const id = entryId(ref);
    const entry = this.entries.get(id);
    if (!entry) {
      this.counts.misses += 1;
      return undefined;
    }
    this.counts.hits += 1;
    entry.uses += 1;
    const copy = Buffer.from(entry.key);
    if (entry.uses >= this.limits.maxUses) this.remove(id, entry, 'uses');
    else {
      this.entries.delete(id);
      this.entries.set(id, entry);
    }
    return copy;
  }

  /** Stores a copy of an unwrapped key (the caller keeps and zeroes its own buffer). */
  put(ref: TenantKeyRef, key: Buffer): void {
    this.store(entryId(ref), ref.tenantId, key);
  }

  /** Drops (and zeroes) every entry of the tenant; an unwrap in flight for it will not be stored. */
  invalidateTenant(tenantId: string): number {
    this.generations.set(tenantId, (this.generations.get(tenantId) ?? 0) + 1);
    let dropped = 0;
    for (const [id, entry] of this.entries) {
      if (entry.tenantId !== tenantId) continue;
      this.remove(id, entry, 'invalidated');
      dropped += 1;
    }
    return dropped;
  }

  /**
   * Drops entries past their age. Called on every lookup (it visits only the expired entries and
   * the oldest live one); the worker also calls it on a timer.
   */
  sweep(): number {
    const now = this.now();
    let dropped = 0;
    for (const [id, entry] of this.byAge) {
      if (now - entry.unwrappedAt < this.limits.maxAgeMs) break;
      this.remove(id, entry, 'age');
      dropped += 1;
    }
    return dropped;
  }

  /** Drops (and zeroes) everything: at shutdown, or when the KEK itself changes hands. */
  clear(): void {
    for (const entry of this.entries.values()) this.drop(entry, 'cleared');
    this.entries.clear();
    this.byAge.clear();
    this.generations.clear();
  }

  stats(): TenantKeyCacheStats {
    return { ...this.counts, entries: this.entries.size };
  }

  private store(id: string, tenantId: string, key: Buffer): void {
    if (!this.enabled) return;
    const previous = this.entries.get(id);
    if (previous) this.remove(id, previous, 'size');
    while (this.entries.size >= this.limits.maxEntries) {
      const oldest = this.entries.entries().next().value;
      if (!oldest) break;
      this.remove(oldest[0], oldest[1], 'size');
    }
    const entry = { tenantId, key: Buffer.from(key), unwrappedAt: this.now(), uses: 0 };
    this.entries.set(id, entry);
    this.byAge.set(id, entry);
  }

  private remove(id: string, entry: Entry, reason: EvictionReason): void {
    this.entries.delete(id);
    this.byAge.delete(id);
    this.drop(entry, reason);
  }

  private drop(entry: Entry, reason: EvictionReason): void {
    entry.key.fill(0);
    this.counts.evictions += 1;
    this.onEvict?.(reason);
  }
}

/** The fingerprint names the wrapped bytes without revealing anything about the key inside. */
function entryId(ref: TenantKeyRef): string {
  const fingerprint = createHash('sha256').update(ref.wrappedKey).digest('base64url');
  return `${ref.vaultId ?? 'primary'}\u0000${ref.tenantId}\u0000${ref.tenantKeyVersion}\u0000${ref.kekVersion}\u0000${fingerprint}`;
}

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TenantKeyCache, type TenantKeyRef } from '../activities/kek/tenant-key-cache';

function ref(tenantId = 't1', over: Partial<TenantKeyRef> = {}): TenantKeyRef {
  return { tenantId, tenantKeyVersion: 1, kekVersion: 'k1', wrappedKey: Buffer.from(`wrapped-${tenantId}`), ...over };
}

/** A counting stand-in for the Key Vault unwrap. */
function unwrapper(key = randomBytes(32)) {
  const calls = { n: 0 };
  return { calls, key, fn: async () => (calls.n++, Buffer.from(key)) };
}

class Clock {
  t = 1_000_000;
  now = () => this.t;
}

describe('tenant key cache', () => {
  it('answers a second lookup from memory, with a copy each time', async () => {
    const cache = new TenantKeyCache({ maxEntries: 10, maxAgeMs: 60_000, maxUses: 100 });
    const u = unwrapper();
    const a = await cache.getOrUnwrap(ref(), u.fn);
    const b = await cache.getOrUnwrap(ref(), u.fn);
    expect(u.calls.n).toBe(1);
    expect(a.equals(u.key)).toBe(true);
    expect(b.equals(u.key)).toBe(true);
    a.fill(0); // the caller zeroes its copy; the cache's own is untouched
    const c = await cache.getOrUnwrap(ref(), u.fn);
    expect(c.equals(u.key)).toBe(true);
    expect(cache.stats()).toEqual({ hits: 2, misses: 1, evictions: 0, entries: 1 });
  });

  it('only answers for the exact wrapped bytes, KEK version and key version', async () => {
    const cache = new TenantKeyCache({ maxEntries: 10, maxAgeMs: 60_000, maxUses: 100 });
    const u = unwrapper();
    await cache.getOrUnwrap(ref(), u.fn);
    expect(cache.get(ref('t1', { wrappedKey: Buffer.from('rewrapped') }))).toBeUndefined();
    expect(cache.get(ref('t1', { kekVersion: 'k2' }))).toBeUndefined();
    expect(cache.get(ref('t1', { tenantKeyVersion: 2 }))).toBeUndefined();
    expect(cache.get(ref('t2', { wrappedKey: Buffer.from('wrapped-t1') }))).toBeUndefined();
    expect(cache.get(ref())).toBeDefined();
  });

  it('shares one unwrap between concurrent misses, and every caller owns its buffer', async () => {
    const cache = new TenantKeyCache({ maxEntries: 10, maxAgeMs: 60_000, maxUses: 100 });
    const u = unwrapper();
    const got = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const k = await cache.getOrUnwrap(ref(), u.fn);
        const copy = Buffer.from(k);
        k.fill(0); // zeroing one caller's buffer must not touch the others'
        return copy;
      }),
    );
    expect(u.calls.n).toBe(1);
    for (const k of got) expect(k.equals(u.key)).toBe(true);
  });

  it('evicts the least recently used entry beyond maxEntries and zeroes it', async () => {
    const evicted: string[] = [];
    const cache = new TenantKeyCache({ maxEntries: 2, maxAgeMs: 60_000, maxUses: 100 }, Date.now, (r) =>
      evicted.push(r),
    );
    await cache.getOrUnwrap(ref('a'), unwrapper().fn);
    await cache.getOrUnwrap(ref('b'), unwrapper().fn);
    cache.get(ref('a')); // a is now the most recent
    await cache.getOrUnwrap(ref('c'), unwrapper().fn);
    expect(cache.stats().entries).toBe(2);
    expect(evicted).toEqual(['size']);
    expect(cache.get(ref('b'))).toBeUndefined();
    expect(cache.get(ref('a'))).toBeDefined();
    expect(cache.get(ref('c'))).toBeDefined();
  });

  it('drops an entry when it reaches its age, counted from the unwrap, not the last use', async () => {
    const clock = new Clock();
    const cache = new TenantKeyCache({ maxEntries: 10, maxAgeMs: 1000, maxUses: 100 }, clock.now);
    const u = unwrapper();
    await cache.getOrUnwrap(ref(), u.fn);
    clock.t += 600;
    expect(cache.get(ref())).toBeDefined();
    clock.t += 399;
    expect(cache.get(ref())).toBeDefined();
    clock.t += 1;
    expect(cache.get(ref())).toBeUndefined();
    await cache.getOrUnwrap(ref(), u.fn);
    expect(u.calls.n).toBe(2);
  });

  it('drops an entry after maxUses hand-outs', async () => {
    const cache = new TenantKeyCache({ maxEntries: 10, maxAgeMs: 60_000, maxUses: 3 });
    const u = unwrapper();
    await cache.getOrUnwrap(ref(), u.fn); // the unwrap itself is not a use of the cached copy
    for (let i = 0; i < 3; i++) expect(cache.get(ref())).toBeDefined();
    expect(cache.get(ref())).toBeUndefined();
    expect(cache.stats().evictions).toBe(1);
  });

  it('zeroes the buffers it drops, on invalidation, expiry and clear', async () => {
    const clock = new Clock();
    const cache = new TenantKeyCache({ maxEntries: 10, maxAgeMs: 1000, maxUses: 100 }, clock.now);
    // put() stores a copy: look at the cache's own buffers to see them zeroed.
    const internal = (cache as unknown as { entries: Map<string, { key: Buffer }> }).entries;
    cache.put(ref('a'), randomBytes(32));
    cache.put(ref('b'), randomBytes(32));
    cache.put(ref('c'), randomBytes(32));
    const [a, b, c] = [...internal.values()].map((e) => e.key);
    expect(a!.some((x) => x !== 0)).toBe(true);
    cache.invalidateTenant('a');
    expect(a!.every((x) => x === 0)).toBe(true);
    clock.t += 1000;
    cache.sweep();
    expect(b!.every((x) => x === 0)).toBe(true);
    expect(c!.every((x) => x === 0)).toBe(true);
    cache.put(ref('d'), randomBytes(32));
    const d = [...internal.values()][0]!.key;
    cache.clear();
    expect(d.every((x) => x === 0)).toBe(true);
    expect(cache.stats().entries).toBe(0);
  });

  it('invalidates every entry of a tenant at once, and an unwrap in flight is not stored', async () => {
    const cache = new TenantKeyCache({ maxEntries: 10, maxAgeMs: 60_000, maxUses: 100 });
    await cache.getOrUnwrap(ref('t1'), unwrapper().fn);
    await cache.getOrUnwrap(ref('t1', { tenantKeyVersion: 2, wrappedKey: Buffer.from('v2') }), unwrapper().fn);
    await cache.getOrUnwrap(ref('t2'), unwrapper().fn);
    expect(cache.invalidateTenant('t1')).toBe(2);
    expect(cache.get(ref('t1'))).toBeUndefined();
    expect(cache.get(ref('t2'))).toBeDefined();

    let release!: (b: Buffer) => void;
    const slow = cache.getOrUnwrap(ref('t3'), () => new Promise<Buffer>((r) => (release = r)));
    await Promise.resolve();
    cache.invalidateTenant('t3');
    release(randomBytes(32));
    await slow;
    expect(cache.get(ref('t3'))).toBeUndefined();
  });

  it('is off with maxEntries = 0: every lookup unwraps', async () => {
    const cache = new TenantKeyCache({ maxEntries: 0, maxAgeMs: 60_000, maxUses: 100 });
    const u = unwrapper();
    for (let i = 0; i < 3; i++) expect((await cache.getOrUnwrap(ref(), u.fn)).equals(u.key)).toBe(true);
    expect(u.calls.n).toBe(3);
    expect(cache.stats().entries).toBe(0);
    expect(cache.enabled).toBe(false);
  });

  it('does not cache a failed unwrap', async () => {
    const cache = new TenantKeyCache({ maxEntries: 10, maxAgeMs: 60_000, maxUses: 100 });
    await expect(cache.getOrUnwrap(ref(), () => Promise.reject(new Error('vault away')))).rejects.toThrow('vault away');
    const u = unwrapper();
    await cache.getOrUnwrap(ref(), u.fn);
    expect(u.calls.n).toBe(1);
  });

  it('refuses nonsense limits', () => {
    expect(() => new TenantKeyCache({ maxEntries: -1, maxAgeMs: 1, maxUses: 1 })).toThrow(RangeError);
    expect(() => new TenantKeyCache({ maxEntries: 1, maxAgeMs: 1.5, maxUses: 1 })).toThrow(RangeError);
  });
});

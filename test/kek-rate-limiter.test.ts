import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SlidingWindowLimiter } from '../activities/kek/rate-limiter';

/** The largest number of instants in any half-open window [t, t + 1000). */
function busiestSecond(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  for (const [i, t] of sorted.entries()) {
    let n = 0;
    for (let j = i; j < sorted.length && sorted[j]! < t + 1000; j++) n++;
    best = Math.max(best, n);
  }
  return best;
}

/**
 * For calls that occupy [start, end] (the service sees each at some unknown instant in between), the largest number
 * that can fall into one window [t, t + 1000): a call can share a window with t only if start < t + 1000 and
 * end >= t. The worst windows start at some call's end.
 */
function worstCaseSecond(calls: Array<{ start: number; end: number }>): number {
  let best = 0;
  for (const { end: t } of calls) {
    best = Math.max(best, calls.filter((c) => c.start < t + 1000 && c.end >= t).length);
  }
  return best;
}

/** Deterministic pseudo-random numbers (mulberry32). */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('SlidingWindowLimiter with an injected (fake) clock', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_700_000_000_000 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const clock = (): number => Date.now();

  it('never admits more than the budget in any one-second window, and uses the budget', async () => {
    const limiter = new SlidingWindowLimiter(10, clock);
    const t0 = Date.now();
    const admitted: number[] = [];
    const all = Array.from({ length: 45 }, () => limiter.acquire().then(() => admitted.push(Date.now())));
    await vi.runAllTimersAsync();
    await Promise.all(all);

    expect(admitted).toHaveLength(45);
    expect(busiestSecond(admitted)).toBe(10);
    // The first ten go at once; the rest wait for the window to slide, about a second per ten.
    expect(admitted.slice(0, 10).every((t) => t === t0)).toBe(true);
    expect(admitted[10]! - t0).toBeGreaterThanOrEqual(1000);
    expect(admitted[10]! - t0).toBeLessThanOrEqual(1005);
    expect(admitted.at(-1)! - t0).toBeGreaterThanOrEqual(4000);
    expect(admitted.at(-1)! - t0).toBeLessThan(4100);
  });

  it('holds the budget for callers arriving at random moments (many seeds)', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const random = prng(seed);
      const perSecond = 1 + Math.floor(random() * 8);
      const limiter = new SlidingWindowLimiter(perSecond, clock);
      const admitted: number[] = [];
      const pending: Array<Promise<unknown>> = [];
      for (let i = 0; i < 60; i++) {
        const at = Math.floor(random() * 5000);
        pending.push(
          new Promise<void>((resolve) => setTimeout(resolve, at)).then(() =>
            limiter.acquire().then(() => admitted.push(Date.now())),
          ),
        );
      }
      await vi.runAllTimersAsync();
      await Promise.all(pending);
      expect(admitted).toHaveLength(60);
      expect(busiestSecond(admitted), `seed ${seed}, budget ${perSecond}`).toBeLessThanOrEqual(perSecond);
    }
  });

  it('serves callers in FIFO order, including those that had to wait', async () => {
    const limiter = new SlidingWindowLimiter(3, clock);
    const order: number[] = [];
    const all = Array.from({ length: 10 }, (_, i) => limiter.acquire().then(() => order.push(i)));
    // A late caller queues behind everyone already waiting.
    await vi.advanceTimersByTimeAsync(10);
    all.push(limiter.run(async () => order.push(10)));
    await vi.runAllTimersAsync();
    await Promise.all(all);
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('run() holds the slot while the call is in flight and for a second after it settles', async () => {
    const limiter = new SlidingWindowLimiter(2, clock);
    const t0 = Date.now();
    const calls: Array<{ start: number; end: number }> = [];
    const slowCall = (ms: number) => () =>
      new Promise<number>((resolve) => {
        const start = Date.now();
        setTimeout(() => {
          calls.push({ start, end: Date.now() });
          resolve(start - t0);
        }, ms);
      });
    const started = [limiter.run(slowCall(1500)), limiter.run(slowCall(1500)), limiter.run(slowCall(100))];
    await vi.runAllTimersAsync();
    // Two start at once; the third waits until the first settles (1500) and a second has passed (2500).
    const [a, b, c] = await Promise.all(started);
    expect([a, b]).toEqual([0, 0]);
    expect(c).toBeGreaterThanOrEqual(2500);
    expect(c).toBeLessThanOrEqual(2502);
    // Wherever inside [start, end] the service saw each call, no window holds more than two.
    expect(worstCaseSecond(calls)).toBeLessThanOrEqual(2);
  });

  it('run() keeps the worst case within budget for calls of random latency', async () => {
    for (let seed = 1; seed <= 10; seed++) {
      const random = prng(1000 + seed);
      const perSecond = 2 + Math.floor(random() * 6);
      const limiter = new SlidingWindowLimiter(perSecond, clock);
      const calls: Array<{ start: number; end: number }> = [];
      const pending: Array<Promise<unknown>> = [];
      for (let i = 0; i < 40; i++) {
        const arrival = Math.floor(random() * 3000);
        const latency = Math.floor(random() * 400);
        pending.push(
          new Promise<void>((resolve) => setTimeout(resolve, arrival)).then(() =>
            limiter.run(
              () =>
                new Promise<void>((resolve) => {
                  const start = Date.now();
                  setTimeout(() => {
                    calls.push({ start, end: Date.now() });
                    resolve();
                  }, latency);
                }),
            ),
          ),
        );
      }
      await vi.runAllTimersAsync();
      await Promise.all(pending);
      expect(calls).toHaveLength(40);
      expect(worstCaseSecond(calls), `seed ${seed}, budget ${perSecond}`).toBeLessThanOrEqual(perSecond);
    }
  });

  it('run() passes the result through, and a failed call still releases its slot', async () => {
    const limiter = new SlidingWindowLimiter(1, clock);
    const t0 = Date.now();
    const failed = limiter.run(async () => {
      throw new Error('HSM said no');
    });
    const failure = expect(failed).rejects.toThrow('HSM said no');
    const next = limiter.run(async () => Date.now() - t0);
    await vi.runAllTimersAsync();
    await failure;
    expect(await next).toBe(1001);
  });

  it('rounds a fractional budget down: 2.5 per second admits two in any second', async () => {
    const limiter = new SlidingWindowLimiter(2.5, clock);
    const admitted: number[] = [];
    const all = Array.from({ length: 9 }, () => limiter.acquire().then(() => admitted.push(Date.now())));
    await vi.runAllTimersAsync();
    await Promise.all(all);
    expect(busiestSecond(admitted)).toBe(2);
  });
});

describe('SlidingWindowLimiter with real timers', () => {
  it('holds 5 per second over 12 calls: about two seconds, never 6 in a second', async () => {
    const limiter = new SlidingWindowLimiter(5);
    const started = performance.now();
    const admitted: number[] = [];
    await Promise.all(Array.from({ length: 12 }, () => limiter.acquire().then(() => admitted.push(performance.now()))));
    expect(busiestSecond(admitted)).toBe(5);
    expect(performance.now() - started).toBeGreaterThanOrEqual(2000);
    expect(performance.now() - started).toBeLessThan(3000);
  });
});

describe('SlidingWindowLimiter budget validation', () => {
  it.each([0, -1, -0.5, Number.NaN, 0.5])('refuses a budget of %s calls per second', (budget) => {
    expect(() => new SlidingWindowLimiter(budget)).toThrow(/rate budget must be positive/);
  });

  it('accepts one call per second and more', () => {
    expect(new SlidingWindowLimiter(1).perSecond).toBe(1);
    expect(new SlidingWindowLimiter(100).perSecond).toBe(100);
  });
});

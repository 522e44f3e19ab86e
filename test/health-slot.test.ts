import { describe, expect, it } from 'vitest';
import { nextHealthCheckSlot, unitHash } from '../workflows/health-slot';

const HOUR = 3_600_000;
const INTERVAL = 6 * HOUR;

describe('periodic health check slots', () => {
  it('is deterministic', () => {
    const a = nextHealthCheckSlot({ id: 'anc/t/a', intervalMs: INTERVAL, nowMs: 5e12, lastCheckMs: 5e12 - HOUR });
    const b = nextHealthCheckSlot({ id: 'anc/t/a', intervalMs: INTERVAL, nowMs: 5e12, lastCheckMs: 5e12 - HOUR });
    expect(a).toEqual(b);
  });

  it('spreads ANCs that all become active at the same instant evenly over the interval', () => {
    const now = 5e12;
    const buckets = new Array<number>(12).fill(0);
    const n = 12_000;
    for (let i = 0; i < n; i++) {
      const { atMs, catchUp } = nextHealthCheckSlot({
        id: `anc/tenant-${i % 997}/anc-${i}`,
        intervalMs: INTERVAL,
        nowMs: now,
        jitterMs: 0,
      });
      expect(catchUp).toBe(false);
      expect(atMs).toBeGreaterThanOrEqual(now);
      expect(atMs).toBeLessThan(now + INTERVAL);
      buckets[Math.floor(((atMs - now) / INTERVAL) * 12)]! += 1;
    }
    // Each half-hour of the interval gets its share, within 15 %.
    for (const b of buckets) expect(Math.abs(b - n / 12)).toBeLessThan((n / 12) * 0.15);
  });

  it('keeps an ANC on its phase: consecutive checks are one interval apart (plus jitter)', () => {
    const id = 'anc/t/steady';
    let now = 5e12;
    let last: number | undefined;
    const gaps: number[] = [];
    for (let i = 0; i < 20; i++) {
      const { atMs } = nextHealthCheckSlot({ id, intervalMs: INTERVAL, nowMs: now, lastCheckMs: last });
      if (last !== undefined) gaps.push(atMs - last);
      last = atMs;
      now = atMs + 5_000; // the check ran
    }
    for (const g of gaps) {
      expect(g).toBeGreaterThan(INTERVAL - INTERVAL / 20);
      expect(g).toBeLessThan(INTERVAL + INTERVAL / 20);
    }
  });

  it('never schedules the periodic check sooner than half an interval after the last check', () => {
    for (let i = 0; i < 1000; i++) {
      const now = 5e12 + i * 7_919_000;
      const { atMs } = nextHealthCheckSlot({ id: `anc/t/${i}`, intervalMs: INTERVAL, nowMs: now, lastCheckMs: now });
      expect(atMs - now).toBeGreaterThanOrEqual(INTERVAL / 2);
      expect(atMs - now).toBeLessThanOrEqual(1.5 * INTERVAL + INTERVAL / 20);
    }
  });

  it('moves late checks after an outage to distinct points in the catch-up window instead of now', () => {
    const due = 5e12;
    const now = due + 3 * HOUR; // the workers were away for three hours
    const window = HOUR; // the default: a quarter of the interval, at most an hour
    const offsets = new Set<number>();
    const buckets = new Array<number>(10).fill(0);
    for (let i = 0; i < 5000; i++) {
      const slot = nextHealthCheckSlot({ id: `anc/t/${i}`, intervalMs: INTERVAL, nowMs: now, dueMs: due });
      expect(slot.catchUp).toBe(true);
      expect(slot.atMs).toBeGreaterThanOrEqual(now);
      expect(slot.atMs).toBeLessThan(now + window);
      offsets.add(slot.atMs - now);
      buckets[Math.floor(((slot.atMs - now) / window) * 10)]! += 1;
    }
    expect(offsets.size).toBeGreaterThan(4900);
    for (const b of buckets) expect(Math.abs(b - 500)).toBeLessThan(100);
  });

  it('treats a wake-up within a minute of its due time as on time', () => {
    const due = 5e12;
    const slot = nextHealthCheckSlot({
      id: 'anc/t/x',
      intervalMs: INTERVAL,
      nowMs: due + 30_000,
      dueMs: due,
      lastCheckMs: due - INTERVAL,
    });
    expect(slot.catchUp).toBe(false);
  });

  it('hashes to [0, 1) and separates neighbouring ids', () => {
    const values = Array.from({ length: 1000 }, (_, i) => unitHash(`anc-${i}`));
    for (const v of values) expect(v >= 0 && v < 1).toBe(true);
    expect(new Set(values).size).toBe(1000);
    expect(Math.abs(values.reduce((a, b) => a + b, 0) / 1000 - 0.5)).toBeLessThan(0.05);
  });

  it('refuses a non-positive interval', () => {
    expect(() => nextHealthCheckSlot({ id: 'x', intervalMs: 0, nowMs: 0 })).toThrow(RangeError);
  });
});

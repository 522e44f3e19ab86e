/**
 * When an ANC's next periodic health check runs. Pure and deterministic (no clock, no randomness of
 * its own), so workflows can call it and the capacity simulation can drive it with simulated time.
 *
 * - Each ANC has a fixed phase inside the check interval, from a hash of its id, so the fleet's
 *   checks are spread evenly over the interval instead of bunching where the ANCs were created or
 *   reactivated. On top of the phase, a jitter of up to `jitterMs` (from a hash of the id and the
 *   slot) keeps ANCs with neighbouring phases from lining up exactly.
 * - The next slot is never sooner than half an interval after the last check (a check after a
 *   change, or a catch-up, does not pull the periodic one forward), so the gap between two checks
 *   stays between half and one and a half intervals.
 * - A check that is late (its slot passed more than `lateAfterMs` ago: a worker outage, a tenant
 *   reactivated after weeks) does not fire at once with every other late check: it moves to a
 *   deterministic pseudo-random point within `catchUpWindowMs` from now.
 */
export interface HealthSlotInput {
  /** Stable id of the ANC (its workflow id). */
  id: string;
  intervalMs: number;
  nowMs: number;
  /** When the last check (of any kind) ran; undefined when there was none. */
  lastCheckMs?: number;
  /** When the pending periodic check was due, if one was planned; used to tell a late wake-up. */
  dueMs?: number;
  /** Upper bound of the per-slot jitter. Default: 1/20 of the interval, at most 10 minutes. */
  jitterMs?: number;
  /** A wake-up more than this after its due time is late. Default: 1 minute. */
  lateAfterMs?: number;
  /** Late checks are spread over this window from now. Default: 1/4 of the interval, at most 1 hour. */
  catchUpWindowMs?: number;
}

export interface HealthSlot {
  /** When to run the check (ms since epoch); >= nowMs. */
  atMs: number;
  /** True when this is a late check moved into the catch-up window. */
  catchUp: boolean;
}

export function defaultJitterMs(intervalMs: number): number {
  return Math.min(Math.floor(intervalMs / 20), 10 * 60_000);
}

export function defaultCatchUpWindowMs(intervalMs: number): number {
  return Math.min(Math.floor(intervalMs / 4), 60 * 60_000);
}

export function nextHealthCheckSlot(input: HealthSlotInput): HealthSlot {
  const { id, intervalMs, nowMs } = input;
  if (!(intervalMs > 0) || !Number.isFinite(intervalMs)) throw new RangeError('intervalMs must be positive');
  const jitterMs = Math.max(0, Math.min(input.jitterMs ?? defaultJitterMs(intervalMs), intervalMs / 2));
  const lateAfterMs = input.lateAfterMs ?? 60_000;
  const catchUpWindowMs = Math.max(0, input.catchUpWindowMs ?? defaultCatchUpWindowMs(intervalMs));

  if (input.dueMs !== undefined && nowMs - input.dueMs > lateAfterMs) {
    // Late: a deterministic point in the catch-up window, distinct per ANC and per missed slot.
    const offset = Math.floor(unitHash(`${id}|late|${input.dueMs}`) * catchUpWindowMs);
    return { atMs: nowMs + offset, catchUp: true };
  }

  const phase = Math.floor(unitHash(`${id}|phase`) * intervalMs);
  const earliest = Math.max(nowMs, (input.lastCheckMs ?? -Infinity) + intervalMs / 2);
  // The first slot (phase + k * interval) at or after `earliest`, then its jitter.
  const k = Math.ceil((earliest - phase) / intervalMs);
  const slot = phase + k * intervalMs;
  const at = slot + Math.floor(unitHash(`${id}|jitter|${slot}`) * jitterMs);
  return { atMs: at, catchUp: false };
}

/** FNV-1a (32 bits) of a string, scaled to [0, 1). Not cryptographic: it only spreads load. */
export function unitHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // A final avalanche so nearby ids do not give nearby values.
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h = (h ^ (h >>> 13)) >>> 0;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  return h / 0x1_0000_0000;
}

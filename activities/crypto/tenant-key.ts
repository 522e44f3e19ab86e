import { randomBytes } from 'node:crypto';

/** Length of a tenant key in bytes (AES-256 / HMAC-SHA256 strength). */
export const TENANT_KEY_BYTES = 32;

/** A tenant key is rotated after this many calendar months. */
export const TENANT_KEY_VALIDITY_MONTHS = 12;

/** A fresh random 256-bit tenant key from the OS CSPRNG. */
export function generateTenantKey(): Buffer {
  return randomBytes(TENANT_KEY_BYTES);
}

/**
 * When a key created at `createdAt` expires: the same UTC wall-clock time
 * TENANT_KEY_VALIDITY_MONTHS calendar months later. If that month is shorter,
 * the day is clamped to its last day (Feb 29 2028 -> Feb 28 2029) rather than
 * overflowing into the next month, so a key never lives longer than intended.
 */
export function tenantKeyExpiry(createdAt: Date): Date {
  return addUtcCalendarMonths(createdAt, TENANT_KEY_VALIDITY_MONTHS);
}

function addUtcCalendarMonths(from: Date, months: number): Date {
  const t = from.getTime();
  // Precondition: a real instant, otherwise the arithmetic below yields NaN silently.
  if (Number.isNaN(t)) throw new RangeError('invalid date');
  // Day 1 of the target month never overflows; Date.UTC normalises month > 11.
  const firstOfTarget = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + months, 1));
  const y = firstOfTarget.getUTCFullYear();
  const m = firstOfTarget.getUTCMonth();
  const daysInTarget = new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
  const day = Math.min(from.getUTCDate(), daysInTarget);
  return new Date(
    Date.UTC(y, m, day, from.getUTCHours(), from.getUTCMinutes(), from.getUTCSeconds(), from.getUTCMilliseconds()),
  );
}

/**
 * Overwrite key material / plaintext in place so it does not linger in memory
 * longer than needed. Tolerates undefined so it can sit in `finally` blocks.
 */
export function zero(buf: Buffer | Uint8Array | undefined): void {
  if (buf) buf.fill(0);
}

/** Helpers the rotation's steps share: KEK dates, per-item error triage, bounded parallelism. */
import { Context } from '@temporalio/activity';
import { CancelledFailure } from '@temporalio/common';
import { CredentialOpenError } from '../crypto/seal';
import { KekUnwrapError, KekVersionNotFoundError } from '../kek/provider';

/** A KEK version is renewed this many calendar months before it expires. */
export const KEK_RENEW_BEFORE_EXPIRY_MONTHS = 3;
/** A new KEK version is valid this many calendar months. */
export const KEK_VALIDITY_MONTHS = 12;

/** `from` moved by `months` calendar months (UTC), the day clamped to the target month's last day. */
export function addUtcMonths(from: Date, months: number): Date {
  const t = from.getTime();
  if (Number.isNaN(t)) throw new RangeError('invalid date');
  const firstOfTarget = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + months, 1));
  const y = firstOfTarget.getUTCFullYear();
  const m = firstOfTarget.getUTCMonth();
  const day = Math.min(from.getUTCDate(), new Date(Date.UTC(y, m + 1, 0)).getUTCDate());
  return new Date(
    Date.UTC(y, m, day, from.getUTCHours(), from.getUTCMinutes(), from.getUTCSeconds(), from.getUTCMilliseconds()),
  );
}

/** True when fewer than three months remain before `expiresAt`. */
export function kekRenewalDue(expiresAt: Date, now: Date): boolean {
  return now.getTime() >= addUtcMonths(expiresAt, -KEK_RENEW_BEFORE_EXPIRY_MONTHS).getTime();
}

export function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined; // called directly (tests, tools), not as an activity
  }
}

/** Problems with one item that retrying cannot fix: report it and go on with the others. */
export function permanentItemError(err: unknown): string | undefined {
  if (err instanceof KekUnwrapError) return 'KekUnwrapFailed';
  if (err instanceof KekVersionNotFoundError) return 'KekVersionNotFound';
  if (err instanceof CredentialOpenError) return 'CredentialOpenFailed';
  return undefined;
}

/**
 * Runs `fn` over `items` with at most `concurrency` at once. The first error stops new items from
 * starting; the ones in flight finish (their work is committed, not wasted) and then it is thrown.
 */
export async function forEachLimited<T>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  const ctx = activityContext();
  let next = 0;
  let failure: { err: unknown } | undefined;
  const lane = async (): Promise<void> => {
    while (!failure && next < items.length) {
      if (ctx?.cancellationSignal.aborted) {
        failure = { err: new CancelledFailure('rotation batch cancelled') };
        return;
      }
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, lane));
  if (failure) throw failure.err;
}

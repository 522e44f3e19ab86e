/**
 * Holds calls to a budget of `perSecond` in ANY one-second window (a sliding window, not a
 * bucket that can burst twice across a boundary). One per process; Key Vault's limit is per
 * vault, so several workers should split the budget between them.
 *
 * A fractional budget is rounded down (12.5 allows 12 calls in any second); below one call per
 * second there is no whole call that fits a one-second window, so such budgets are refused.
 */
export class SlidingWindowLimiter {
  /** When each counted call left the window's reach: admission for acquire(), completion for run(). */
  private readonly stamps: number[] = [];
  /** Calls started by run() that have not settled: the service may see them at any moment. */
  private inFlight = 0;
  private settled: (() => void) | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    readonly perSecond: number,
    private readonly now: () => number = () => performance.timeOrigin + performance.now(),
  ) {
    if (!(perSecond >= 1)) throw new Error('rate budget must be positive (at least one call per second)');
  }

  /**
   * Resolves when one more call fits the budget, and counts it at this instant. Callers are served
   * in order. The service sees the call later, after a variable latency, so prefer run().
   */
  acquire(): Promise<void> {
    return this.admit(() => this.stamps.push(this.now()));
  }

  /**
   * Runs `fn` once it fits the budget (callers are served in order). The call holds its slot
   * while it runs and for one second after it settles, so wherever in between the service sees
   * the request, no one-second window at the service holds more than the budget.
   */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.admit(() => (this.inFlight += 1));
    try {
      return await fn();
    } finally {
      this.inFlight -= 1;
      this.stamps.push(this.now());
      this.settled?.();
    }
  }

  private admit(take: () => void): Promise<void> {
    const turn = this.chain.then(() => this.waitForSlot(take));
    this.chain = turn.catch(() => undefined);
    return turn;
  }

  private async waitForSlot(take: () => void): Promise<void> {
    for (;;) {
      const now = this.now();
      while (this.stamps.length > 0 && now - (this.stamps[0] ?? 0) >= 1000) this.stamps.shift();
      if (this.stamps.length + this.inFlight + 1 <= this.perSecond) {
        take();
        return;
      }
      // Wait for the oldest stamp to leave the window, or for a call in flight to settle (which
      // stamps it, so the timer can then be computed).
      await new Promise<void>((resolve) => {
        const oldest = this.stamps[0];
        const timer = oldest === undefined ? undefined : setTimeout(resolve, 1000 - (now - oldest) + 1);
        this.settled = () => {
          if (timer) clearTimeout(timer);
          resolve();
        };
      });
      this.settled = undefined;
    }
  }
}

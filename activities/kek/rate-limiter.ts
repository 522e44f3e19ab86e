/**
 * Holds calls to a budget of `perSecond` in ANY one-second window (a sliding window, not a
 * bucket that can burst twice across a boundary). One per process; Key Vault's limit is per
 * vault, so several workers should split the budget between them.
 */
export class SlidingWindowLimiter {
  private readonly stamps: number[] = [];
  private chain: Promise<void> = Promise.resolve();

  constructor(
    readonly perSecond: number,
    private readonly now: () => number = () => performance.timeOrigin + performance.now(),
  ) {
    if (!(perSecond > 0)) throw new Error('rate budget must be positive');
  }

  /** Resolves when one more call fits the budget, and counts it. Callers are served in order. */
  acquire(): Promise<void> {
    const turn = this.chain.then(() => this.waitForSlot());
    this.chain = turn.catch(() => undefined);
    return turn;
  }

  private async waitForSlot(): Promise<void> {
    for (;;) {
      const now = this.now();
      while (this.stamps.length > 0 && now - (this.stamps[0] ?? 0) >= 1000) this.stamps.shift();
      if (this.stamps.length < this.perSecond) {
        this.stamps.push(now);
        return;
      }
      const wait = 1000 - (now - (this.stamps[0] ?? now)) + 1;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

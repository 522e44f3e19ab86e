/**
 * Runs jobs one at a time in the order they were queued. Update handlers are invoked in the order
 * Temporal accepted them, so queuing from the handler applies updates in that order.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;

  get idle(): boolean {
    return this.pending === 0;
  }

  run<T>(job: () => Promise<T>): Promise<T> {
    this.pending += 1;
    const result = this.tail.then(job);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    void this.tail.then(() => {
      this.pending -= 1;
    });
    return result;
  }
}

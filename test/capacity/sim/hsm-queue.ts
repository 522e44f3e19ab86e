/**
 * A model of the HSM task queue for the capacity simulation: Temporal's task-queue rate limit
 * (maxTaskQueueActivitiesPerSecond) behaves as a token bucket whose burst is about its rate, and tasks
 * wait in priority lanes (1 first). With priorities off, one FIFO holds every task.
 *
 * Event-driven: the queue never ticks. It dispatches what the tokens allow when a task arrives, and
 * otherwise asks its owner (via `wakeAt`) to call `dispatch()` again when the next token accrues.
 */

/** Lanes as the service uses them (common/hsm.ts): 1 create, update, on-demand check; 2 the check after a change; 3 rotation; 5 periodic checks. */
export type Lane = 1 | 2 | 3 | 4 | 5;
export const LANES: readonly Lane[] = [1, 2, 3, 4, 5];

export interface HsmTask {
  lane: Lane;
  /** Called at dispatch time (simulated ms). */
  start(nowMs: number): void;
}

export interface HsmQueueOptions {
  /** Dispatches per second (the budget). */
  ratePerSecond: number;
  /** Bucket size; defaults to the rate (one second's worth). */
  burst?: number;
  priorities: boolean;
}

/** A FIFO with an advancing head, cheaper than Array.shift for millions of tasks. */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  get size(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head += 1;
    if (this.head > 65_536 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

export class TokenBucketQueue {
  readonly rate: number;
  readonly burst: number;
  private tokens: number;
  private lastRefillMs = 0;
  private readonly lanes = new Map<Lane, Fifo<HsmTask>>();
  private readonly fifo = new Fifo<HsmTask>();
  /** When the owner should call dispatch() next; undefined when nothing waits. */
  wakeAtMs: number | undefined;
  private paused = false;
  dispatched = 0;
  maxWaiting = 0;

  constructor(private readonly opts: HsmQueueOptions) {
    if (!(opts.ratePerSecond > 0)) throw new RangeError('ratePerSecond must be positive');
    this.rate = opts.ratePerSecond;
    this.burst = opts.burst ?? opts.ratePerSecond;
    this.tokens = this.burst;
    for (const lane of LANES) this.lanes.set(lane, new Fifo());
  }

  get waiting(): number {
    if (!this.opts.priorities) return this.fifo.size;
    let n = 0;
    for (const q of this.lanes.values()) n += q.size;
    return n;
  }

  waitingIn(lane: Lane): number {
    return this.opts.priorities ? (this.lanes.get(lane)?.size ?? 0) : 0;
  }

  submit(task: HsmTask, nowMs: number): void {
    if (this.opts.priorities) this.lanes.get(task.lane)?.push(task);
    else this.fifo.push(task);
    const waiting = this.waiting;
    if (waiting > this.maxWaiting) this.maxWaiting = waiting;
    this.dispatch(nowMs);
  }

  /** No dispatch while paused (the workers are down); tokens keep accruing up to the burst. */
  setPaused(paused: boolean, nowMs: number): void {
    this.paused = paused;
    if (!paused) this.dispatch(nowMs);
  }

  dispatch(nowMs: number): void {
    this.refill(nowMs);
    this.wakeAtMs = undefined;
    if (this.paused) return;
    while (this.tokens >= 1) {
      const task = this.next();
      if (!task) return;
      this.tokens -= 1;
      this.dispatched += 1;
      task.start(nowMs);
    }
    if (this.waiting > 0) this.wakeAtMs = nowMs + Math.max(0.001, ((1 - this.tokens) / this.rate) * 1000);
  }

  private refill(nowMs: number): void {
    if (nowMs > this.lastRefillMs) {
      this.tokens = Math.min(this.burst, this.tokens + ((nowMs - this.lastRefillMs) / 1000) * this.rate);
      this.lastRefillMs = nowMs;
    }
  }

  private next(): HsmTask | undefined {
    if (!this.opts.priorities) return this.fifo.shift();
    for (const lane of LANES) {
      const task = this.lanes.get(lane)?.shift();
      if (task) return task;
    }
    return undefined;
  }
}

/**
 * One timer for the whole simulated fleet. A timer per device and per behaviour would mean tens of
 * thousands of live timers; instead every simulated runtime (and flapping link) registers here
 * while it has timed work, and one tick walks them round-robin. A tick stops after its time budget
 * and the next tick resumes where it stopped, so a large fleet never blocks the event loop for
 * long (the real agents' MQTT traffic shares that loop).
 */

export interface Tickable {
  /** Called with the current time; does whatever became due. */
  tick(now: number): void;
}

export interface SchedulerOptions {
  /** Tick period. Default 200 ms: trial evaluation is per second, samples per second. */
  readonly tickMs?: number;
  /** Work per tick before it yields to the event loop. Default 25 ms. */
  readonly budgetMs?: number;
  readonly now?: () => number;
  /** Errors thrown by a tickable are reported here and never stop the scheduler. */
  readonly onError?: (e: unknown) => void;
}

export class SimScheduler {
  private readonly items = new Set<Tickable>();
  private cursor: Iterator<Tickable> | null = null;
  private timer: NodeJS.Timeout | null = null;
  readonly tickMs: number;
  private readonly budgetMs: number;
  readonly now: () => number;
  /** Ticks that ran out of budget before visiting every item (the fleet outgrows the tick). */
  overruns = 0;

  constructor(private readonly opts: SchedulerOptions = {}) {
    this.tickMs = opts.tickMs ?? 200;
    this.budgetMs = opts.budgetMs ?? 25;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.items.size;
  }

  add(t: Tickable): void {
    this.items.add(t);
  }

  delete(t: Tickable): void {
    this.items.delete(t);
  }

  has(t: Tickable): boolean {
    return this.items.has(t);
  }

  /** Starts the periodic tick (unref'd: the simulator's own handles keep the process alive). */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.runOnce(), this.tickMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.cursor = null;
  }

  /**
   * One tick: visits items from where the last tick stopped until all were visited or the budget
   * is spent. Items added during a tick are visited in it (Set iteration is live). Returns how many
   * items were visited.
   */
  runOnce(now: number = this.now()): number {
    const started = performance.now();
    this.cursor ??= this.items.values();
    let visited = 0;
    for (;;) {
      const next = this.cursor.next();
      if (next.done) {
        this.cursor = null;
        return visited;
      }
      try {
        next.value.tick(now);
      } catch (e) {
        this.opts.onError?.(e);
      }
      visited++;
      if ((visited & 63) === 0 && performance.now() - started > this.budgetMs) {
        this.overruns++;
        return visited;
      }
    }
  }
}

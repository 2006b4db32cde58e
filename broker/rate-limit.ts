/**
 * Token bucket for new connections. A reconnect storm (every device of a site after a network
 * blip) would otherwise have the broker parse CONNECT, run authentication and replay retained
 * messages for thousands of sockets at once while keepalives of the connected ones starve; the
 * bucket admits `ratePerSecond` on average with bursts up to `burst`, and the listener closes
 * the rest at once so their clients back off and retry (the agent reconnects with jittered
 * exponential backoff).
 */

export interface Clock {
  now(): number;
}

const systemClock: Clock = { now: () => performance.now() };

export class TokenBucket {
  readonly #rate: number;
  readonly #burst: number;
  readonly #clock: Clock;
  #tokens: number;
  #last: number;

  constructor(opts: { ratePerSecond: number; burst?: number; clock?: Clock }) {
    if (!(opts.ratePerSecond > 0)) throw new RangeError('ratePerSecond must be positive');
    this.#rate = opts.ratePerSecond / 1000;
    this.#burst = Math.max(1, opts.burst ?? opts.ratePerSecond);
    this.#clock = opts.clock ?? systemClock;
    this.#tokens = this.#burst;
    this.#last = this.#clock.now();
  }

  /** Takes one token if there is one. Never blocks. */
  tryTake(): boolean {
    const now = this.#clock.now();
    // A clock that steps back (it should not: performance.now is monotonic) refills nothing.
    const elapsed = Math.max(0, now - this.#last);
    this.#last = now;
    this.#tokens = Math.min(this.#burst, this.#tokens + elapsed * this.#rate);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Whether tryTake() would succeed now; takes nothing. */
  available(): boolean {
    const now = this.#clock.now();
    const elapsed = Math.max(0, now - this.#last);
    return Math.min(this.#burst, this.#tokens + elapsed * this.#rate) >= 1;
  }

  get tokens(): number {
    return this.#tokens;
  }
}

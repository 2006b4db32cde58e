/**
 * Admission of new connections (issue #11: "reconnects must not stampede; the broker applies a
 * connection-rate limit that keeps the manager responsive").
 *
 * A fixed rate that closes every socket above it wastes the capacity the manager has: at 1,000/s
 * two thirds of a 10,000-device storm were refused and came back after a jittered backoff, so the
 * storm could not end before 9 s however idle the process was. The gate below *delays* instead:
 * a new connection waits, unread, in a FIFO until the manager has room for it, and is handed to
 * aedes then. "Room" is measured, not guessed:
 * - at most `maxPending` connections between hand-over and their CONNACK (handshakes in
 *   progress: authentication, session set-up);
 * - no admission while the event loop runs late by more than `maxLoopDelayMs` (the delay of the
 *   gate's own 10 ms tick), which is what the HTTP API's latency and connected clients'
 *   keepalives see;
 * - the token bucket (`ratePerSecond`) still caps the average rate.
 * Refusal stays the answer to overload: a socket that waited `maxWaitMs`, or arrives when
 * `maxQueued` are already waiting, is closed at once and its client backs off.
 *
 * Generic over the waiting item (a socket or stream) and with an injectable clock and timer, so
 * the policy is tested without sockets (test/unit/broker-admission.test.ts).
 */
import { type Clock, TokenBucket } from './rate-limit.js';

export interface AdmissionOptions {
  /** Average admissions per second (token bucket, burst = one second's worth). */
  readonly ratePerSecond: number;
  /** Connections handed to the broker that have not had their CONNACK yet. */
  readonly maxPending: number;
  /** Connections waiting for admission; one more is refused at once. */
  readonly maxQueued: number;
  /** How long a connection may wait before it is refused (ms). */
  readonly maxWaitMs: number;
  /** Event-loop delay (ms) above which nobody is admitted until it falls again. */
  readonly maxLoopDelayMs: number;
}

export interface AdmissionTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export type RefusalReason = 'queue-full' | 'waited-too-long' | 'closing';

export interface AdmissionStats {
  readonly pending: number;
  readonly queued: number;
  /** The event-loop delay the last tick measured (ms); 0 while the gate is idle. */
  readonly loopDelayMs: number;
  /** Totals since start. */
  readonly admitted: number;
  readonly delayed: number;
  readonly refused: number;
}

/** The gate's tick: the loop-delay sample period and the longest a waiting connection sleeps. */
export const ADMISSION_TICK_MS = 10;

const systemTimers: AdmissionTimers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    // The gate must not keep a closing process alive.
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

interface Waiting<T> {
  readonly item: T;
  readonly since: number;
  readonly start: (item: T) => void;
  readonly refuse: (item: T, reason: RefusalReason) => void;
  gone: boolean;
}

export class AdmissionGate<T> {
  readonly #opts: AdmissionOptions;
  readonly #clock: Clock;
  readonly #timers: AdmissionTimers;
  readonly #bucket: TokenBucket;
  readonly #pending = new Set<T>();
  /** FIFO with a moving head (shift() on a 10,000-entry array is O(n) per call). */
  #queue: Array<Waiting<T>> = [];
  #head = 0;
  readonly #waiting = new Map<T, Waiting<T>>();
  #timer: unknown;
  #tickDue = 0;
  #loopDelay = 0;
  #closed = false;
  #admitted = 0;
  #delayed = 0;
  #refused = 0;

  constructor(opts: AdmissionOptions, deps: { clock?: Clock; timers?: AdmissionTimers } = {}) {
    this.#opts = opts;
    this.#clock = deps.clock ?? { now: () => performance.now() };
    this.#timers = deps.timers ?? systemTimers;
    this.#bucket = new TokenBucket({ ratePerSecond: opts.ratePerSecond, clock: this.#clock });
  }

  /**
   * A new connection: `start` runs now or once there is room (the connection is then pending
   * until done()), `refuse` runs if it is not admitted. Returns what happened right away.
   */
  offer(
    item: T,
    start: (item: T) => void,
    refuse: (item: T, reason: RefusalReason) => void,
  ): 'started' | 'queued' | 'refused' {
    if (this.#closed) {
      this.#refuse(refuse, item, 'closing');
      return 'refused';
    }
    if (this.#queued() === 0 && this.#hasRoom() && this.#bucket.tryTake()) {
      this.#start(start, item);
      return 'started';
    }
    if (this.#queued() >= this.#opts.maxQueued) {
      this.#refuse(refuse, item, 'queue-full');
      return 'refused';
    }
    const w: Waiting<T> = { item, since: this.#clock.now(), start, refuse, gone: false };
    this.#queue.push(w);
    this.#waiting.set(item, w);
    this.#delayed++;
    this.#ensureTicking();
    return 'queued';
  }

  /** Whether a new connection would be refused at once (cheap pre-check before TLS or an HTTP upgrade). */
  get full(): boolean {
    if (this.#closed) return true;
    const queued = this.#queued();
    if (queued < this.#opts.maxQueued) return false;
    // maxQueued reached (or 0: nothing may wait): only a connection that would start now gets in.
    return queued > 0 || !this.#hasRoom() || !this.#bucket.available();
  }

  /** The connection finished its handshake, or closed (queued or pending): its place is freed. */
  done(item: T): void {
    const w = this.#waiting.get(item);
    if (w) {
      w.gone = true;
      this.#waiting.delete(item);
    }
    if (this.#pending.delete(item)) this.#pump();
  }

  /** Refuses everything waiting and admits nothing more. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#drainQueue()) this.#refuse(w.refuse, w.item, 'closing');
  }

  get stats(): AdmissionStats {
    return {
      pending: this.#pending.size,
      queued: this.#queued(),
      loopDelayMs: this.#loopDelay,
      admitted: this.#admitted,
      delayed: this.#delayed,
      refused: this.#refused,
    };
  }

  #queued(): number {
    return this.#waiting.size;
  }

  #hasRoom(): boolean {
    return this.#pending.size < this.#opts.maxPending && this.#loopDelay <= this.#opts.maxLoopDelayMs;
  }

  #start(start: (item: T) => void, item: T): void {
    this.#pending.add(item);
    this.#admitted++;
    this.#ensureTicking();
    start(item);
  }

  #refuse(refuse: (item: T, reason: RefusalReason) => void, item: T, reason: RefusalReason): void {
    this.#refused++;
    refuse(item, reason);
  }

  *#drainQueue(): Generator<Waiting<T>> {
    while (this.#head < this.#queue.length) {
      const w = this.#queue[this.#head++] as Waiting<T>;
      if (w.gone) continue;
      w.gone = true;
      this.#waiting.delete(w.item);
      yield w;
    }
    this.#queue = [];
    this.#head = 0;
  }

  /** Admits from the head of the queue while there is room; refuses those that waited too long. */
  #pump(): void {
    const now = this.#clock.now();
    while (this.#head < this.#queue.length) {
      const w = this.#queue[this.#head] as Waiting<T>;
      if (w.gone) {
        this.#head++;
        continue;
      }
      if (now - w.since > this.#opts.maxWaitMs) {
        this.#head++;
        w.gone = true;
        this.#waiting.delete(w.item);
        this.#refuse(w.refuse, w.item, 'waited-too-long');
        continue;
      }
      if (!this.#hasRoom() || !this.#bucket.tryTake()) break;
      this.#head++;
      w.gone = true;
      this.#waiting.delete(w.item);
      this.#start(w.start, w.item);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  /**
   * The tick runs while anything is pending or waiting: it measures how late it fires (the
   * event-loop delay every other callback sees too) and admits what the new delay allows. An idle
   * gate has no timer, and its delay reads 0.
   */
  #ensureTicking(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#tickDue = this.#clock.now() + ADMISSION_TICK_MS;
    this.#timer = this.#timers.setTimeout(() => this.#tick(), ADMISSION_TICK_MS);
  }

  #tick(): void {
    this.#timer = undefined;
    this.#loopDelay = Math.max(0, this.#clock.now() - this.#tickDue);
    this.#pump();
    if (this.#pending.size > 0 || this.#queued() > 0) this.#ensureTicking();
    else this.#loopDelay = 0;
  }
}

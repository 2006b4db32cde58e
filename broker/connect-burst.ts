/**
 * One write for a device's connect burst (issue #11, per-connect CPU).
 *
 * After its CONNACK a device sends its state, reported, health and telemetry messages and a
 * SUBSCRIBE in one go (agent/mqtt-link.ts), and the broker answers with two PUBACKs, a SUBACK and
 * the retained desired document. aedes writes each answer when its own asynchronous step ends, in
 * different event-loop turns, so each became one `writev` system call: about 4 per connect, the
 * largest single cost of a reconnect storm (17.8 % of the manager's CPU profile at 3,000
 * devices), on loopback as on a NIC. Holding the socket corked from the CONNACK until the retained
 * desired document is written (or `windowMs` at most) sends them together.
 *
 * What it costs: the answers to a device's first packets wait up to `windowMs` (the retained
 * document usually ends the hold earlier); nothing else is held, and a socket is held once.
 */

export interface Corkable {
  cork(): void;
  uncork(): void;
  readonly destroyed?: boolean;
}

interface Held {
  readonly stream: Corkable;
  readonly until: number;
  released: boolean;
}

/** How long a device's first answers may wait to be written together (ms). */
export const CONNECT_BURST_WINDOW_MS = 50;

export class ConnectBurst {
  readonly #windowMs: number;
  readonly #now: () => number;
  /** In hold order, which is deadline order: the timer only ever looks at the head. */
  #queue: Held[] = [];
  #head = 0;
  readonly #held = new WeakMap<Corkable, Held>();
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: { windowMs?: number; now?: () => number } = {}) {
    this.#windowMs = opts.windowMs ?? CONNECT_BURST_WINDOW_MS;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** Starts holding this socket's writes (once per socket). */
  hold(stream: Corkable): void {
    if (this.#windowMs <= 0 || this.#held.has(stream)) return;
    stream.cork();
    const h: Held = { stream, until: this.#now() + this.#windowMs, released: false };
    this.#held.set(stream, h);
    this.#queue.push(h);
    this.#arm();
  }

  /** Whether this socket's writes are being held now. */
  holding(stream: Corkable): boolean {
    const h = this.#held.get(stream);
    return h !== undefined && !h.released;
  }

  /** Writes what the socket holds now; later writes go out as they come. */
  release(stream: Corkable): void {
    const h = this.#held.get(stream);
    if (h) this.#release(h);
  }

  /** Releases everything (broker shutdown). */
  close(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (let i = this.#head; i < this.#queue.length; i++) this.#release(this.#queue[i] as Held);
    this.#queue = [];
    this.#head = 0;
  }

  get size(): number {
    return this.#queue.length - this.#head;
  }

  #release(h: Held): void {
    if (h.released) return;
    h.released = true;
    if (!h.stream.destroyed) h.stream.uncork();
  }

  #arm(): void {
    if (this.#timer || this.#head >= this.#queue.length) return;
    const head = this.#queue[this.#head] as Held;
    this.#timer = setTimeout(() => this.#expire(), Math.max(1, head.until - this.#now()));
    // A held socket must not keep a closing process alive; close() releases them anyway.
    this.#timer.unref();
  }

  #expire(): void {
    this.#timer = undefined;
    const now = this.#now();
    while (this.#head < this.#queue.length) {
      const h = this.#queue[this.#head] as Held;
      if (!h.released && h.until > now) break;
      this.#head++;
      this.#release(h);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    this.#arm();
  }
}

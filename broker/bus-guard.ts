/**
 * Keeps aedes' message bus (mqemitter 7) from overflowing the stack. With `concurrency` deliveries
 * in flight the bus queues further messages; each finished message starts the next queued one
 * from inside its own completion (`released` -> `_do` -> fastparallel -> listener callback ->
 * `released` ...). A message whose listeners all complete synchronously (no subscriber at all, like
 * most `$SYS` messages, or only the manager's in-process link) therefore nests one level deeper per
 * queued message, and a few thousand queued ones end in `RangeError: Maximum call stack size
 * exceeded`, which kills the process. Seen at the end of a 10,000-device reconnect storm: closing
 * the devices queued their wills and `$SYS` disconnect messages behind deliveries to the manager's
 * loopback socket (docs/benchmarks.md "reconnect-storm").
 *
 * The guard counts nested `_do` calls; past MAX_DEPTH it puts the message back at the head of the
 * queue and resumes from a fresh stack (setImmediate). `current` is raised again for the resume's
 * `released()` to lower, so new messages keep queueing behind it: the order is unchanged.
 */

/** The parts of mqemitter's instance the guard relies on (mqemitter 7.x, mqemitter.js). */
interface Bus {
  current: number;
  _messageQueue: unknown[];
  _messageCallbacks: unknown[];
  _released: () => void;
  _do(message: unknown, cb: unknown): unknown;
}

/** Nested deliveries per stack; each level takes a handful of frames. */
export const MAX_DEPTH = 200;

export function guardBusRecursion(mq: unknown): void {
  const bus = mq as Bus;
  if (
    typeof bus._do !== 'function' ||
    typeof bus._released !== 'function' ||
    !Array.isArray(bus._messageQueue) ||
    !Array.isArray(bus._messageCallbacks) ||
    typeof bus.current !== 'number'
  ) {
    // Another mqemitter than the one this was written against: run it as it is.
    return;
  }
  const run = bus._do;
  let depth = 0;
  bus._do = function guardedDo(this: Bus, message: unknown, cb: unknown) {
    if (depth >= MAX_DEPTH) {
      this._messageQueue.unshift(message);
      this._messageCallbacks.unshift(cb);
      this.current++;
      setImmediate(this._released);
      return this;
    }
    depth++;
    try {
      return run.call(this, message, cb);
    } finally {
      depth--;
    }
  };
}

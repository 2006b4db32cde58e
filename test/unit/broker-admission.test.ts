import { describe, expect, it } from 'vitest';
import { ADMISSION_TICK_MS, AdmissionGate, type AdmissionOptions, type RefusalReason } from '../../broker/admission.js';

/** A fake clock and a fake one-shot timer queue: time moves only when the test says so. */
function fakeTime() {
  let now = 1_000;
  let timers: Array<{ at: number; fn: () => void; id: number }> = [];
  let nextId = 1;
  return {
    clock: { now: () => now },
    timers: {
      setTimeout: (fn: () => void, ms: number) => {
        const t = { at: now + ms, fn, id: nextId++ };
        timers.push(t);
        return t.id;
      },
      clearTimeout: (id: unknown) => {
        timers = timers.filter((t) => t.id !== id);
      },
    },
    /** Advances by `ms`; each due timer fires `lateBy` ms after its due time (a busy event loop). */
    advance(ms: number, lateBy = 0) {
      const until = now + ms;
      for (;;) {
        const due = timers.filter((t) => t.at <= until).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        timers = timers.filter((t) => t !== due);
        now = Math.max(now, due.at + lateBy);
        due.fn();
      }
      now = Math.max(now, until);
    },
    get armed() {
      return timers.length;
    },
  };
}

const OPTS: AdmissionOptions = {
  ratePerSecond: 1_000,
  maxPending: 2,
  maxQueued: 3,
  maxWaitMs: 500,
  maxLoopDelayMs: 50,
};

function setup(opts: Partial<AdmissionOptions> = {}) {
  const time = fakeTime();
  const gate = new AdmissionGate<string>({ ...OPTS, ...opts }, { clock: time.clock, timers: time.timers });
  const started: string[] = [];
  const refused: Array<[string, RefusalReason]> = [];
  const offer = (id: string) =>
    gate.offer(
      id,
      (s) => started.push(s),
      (s, r) => refused.push([s, r]),
    );
  return { time, gate, started, refused, offer };
}

describe('AdmissionGate', () => {
  it('starts at once while there is room, then queues instead of refusing, in arrival order', () => {
    const { gate, started, refused, offer } = setup();
    expect(offer('a')).toBe('started');
    expect(offer('b')).toBe('started');
    expect(offer('c')).toBe('queued');
    expect(offer('d')).toBe('queued');
    expect(started).toEqual(['a', 'b']);
    gate.done('a'); // a's CONNACK went out: c takes its place
    expect(started).toEqual(['a', 'b', 'c']);
    gate.done('b');
    expect(started).toEqual(['a', 'b', 'c', 'd']);
    expect(refused).toEqual([]);
    expect(gate.stats).toMatchObject({ pending: 2, queued: 0, admitted: 4, delayed: 2, refused: 0 });
  });

  it('refuses at once when the queue is full, and those that waited longer than maxWaitMs', () => {
    const { gate, time, started, refused, offer } = setup();
    offer('a');
    offer('b');
    offer('c');
    offer('d');
    offer('e');
    expect(gate.full).toBe(true);
    expect(offer('f')).toBe('refused');
    expect(refused).toEqual([['f', 'queue-full']]);
    time.advance(OPTS.maxWaitMs + ADMISSION_TICK_MS);
    expect(refused.map(([id, r]) => `${id}:${r}`)).toEqual([
      'f:queue-full',
      'c:waited-too-long',
      'd:waited-too-long',
      'e:waited-too-long',
    ]);
    expect(started).toEqual(['a', 'b']);
    expect(gate.stats.queued).toBe(0);
  });

  it('admits nobody while the event loop runs late, and resumes when it catches up', () => {
    const { gate, time, started, offer } = setup({ maxPending: 100 });
    offer('a'); // starts; the tick now runs while a is pending
    time.advance(ADMISSION_TICK_MS, 80); // a tick fires 80 ms late: the loop is busy
    expect(gate.stats.loopDelayMs).toBe(80);
    expect(offer('b')).toBe('queued');
    time.advance(ADMISSION_TICK_MS, 80);
    expect(started).toEqual(['a']);
    time.advance(ADMISSION_TICK_MS, 0); // on time again
    expect(started).toEqual(['a', 'b']);
  });

  it('keeps the average under the rate: the bucket delays, it does not refuse', () => {
    const { time, started, refused, offer, gate } = setup({
      ratePerSecond: 2,
      maxPending: 100,
      maxQueued: 10,
      maxWaitMs: 5_000,
    });
    for (const id of ['a', 'b', 'c', 'd']) offer(id);
    expect(started).toEqual(['a', 'b']); // burst = one second's worth
    for (const id of ['a', 'b']) gate.done(id);
    time.advance(500);
    expect(started).toEqual(['a', 'b', 'c']);
    time.advance(500);
    expect(started).toEqual(['a', 'b', 'c', 'd']);
    expect(refused).toEqual([]);
  });

  it('with maxQueued 0 nothing waits: full() answers for the raw socket whether it would start now', () => {
    const { gate, started, refused, offer } = setup({ maxQueued: 0, maxPending: 1 });
    expect(gate.full).toBe(false);
    expect(offer('a')).toBe('started');
    expect(gate.full).toBe(true); // no room: a new socket is refused before any TLS handshake
    expect(offer('b')).toBe('refused');
    gate.done('a');
    expect(gate.full).toBe(false);
    expect(started).toEqual(['a']);
    expect(refused).toEqual([['b', 'queue-full']]);
  });

  it('forgets a waiting connection that closed, has no timer when idle, and refuses all on close()', () => {
    const { gate, time, started, refused, offer } = setup();
    offer('a');
    offer('b');
    offer('c');
    offer('d');
    gate.done('c'); // c's client gave up while waiting
    gate.done('a');
    expect(started).toEqual(['a', 'b', 'd']);
    gate.done('b');
    gate.done('d');
    time.advance(ADMISSION_TICK_MS * 3);
    expect(time.armed).toBe(0);
    expect(gate.stats.loopDelayMs).toBe(0);
    offer('e');
    offer('f');
    offer('g');
    gate.close();
    expect(refused).toEqual([['g', 'closing']]);
    expect(offer('h')).toBe('refused');
    expect(time.armed).toBe(0);
  });
});

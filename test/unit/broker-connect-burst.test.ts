import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConnectBurst } from '../../broker/connect-burst.js';

function stream() {
  return {
    corked: 0,
    destroyed: false,
    cork() {
      this.corked++;
    },
    uncork() {
      this.corked--;
    },
  };
}

describe('ConnectBurst', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());
  const now = () => Date.now();

  it('holds a socket once, until release() or the window, whichever comes first', () => {
    const b = new ConnectBurst({ windowMs: 50, now });
    const a = stream();
    const c = stream();
    b.hold(a);
    b.hold(a); // a second CONNACK on the same socket does not cork twice
    vi.advanceTimersByTime(20);
    b.hold(c);
    expect([a.corked, c.corked]).toEqual([1, 1]);
    b.release(c);
    expect(c.corked).toBe(0);
    expect(b.holding(c)).toBe(false);
    vi.advanceTimersByTime(30);
    expect(a.corked).toBe(0);
    expect(b.size).toBe(0);
    b.release(a); // already released: nothing more
    expect(a.corked).toBe(0);
  });

  it('does not touch a destroyed socket, and close() releases everything', () => {
    const b = new ConnectBurst({ windowMs: 50, now });
    const a = stream();
    const c = stream();
    b.hold(a);
    b.hold(c);
    a.destroyed = true;
    b.close();
    expect([a.corked, c.corked]).toEqual([1, 0]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('windowMs 0 holds nothing', () => {
    const b = new ConnectBurst({ windowMs: 0, now });
    const a = stream();
    b.hold(a);
    expect(a.corked).toBe(0);
    expect(b.holding(a)).toBe(false);
  });
});

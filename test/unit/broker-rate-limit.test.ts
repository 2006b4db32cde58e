import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../broker/rate-limit.js';

function fakeClock(start = 1_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

const takeAll = (b: TokenBucket, n: number) => Array.from({ length: n }, () => b.tryTake()).filter(Boolean).length;

describe('TokenBucket', () => {
  it('admits a burst, then the refill rate', () => {
    const clock = fakeClock();
    const b = new TokenBucket({ ratePerSecond: 10, clock });
    expect(takeAll(b, 25)).toBe(10); // burst defaults to one second's worth
    clock.advance(100);
    expect(takeAll(b, 5)).toBe(1);
    clock.advance(1_000);
    expect(takeAll(b, 50)).toBe(10);
  });

  it('never stores more than the burst, however long it idles', () => {
    const clock = fakeClock();
    const b = new TokenBucket({ ratePerSecond: 5, burst: 2, clock });
    clock.advance(60_000);
    expect(takeAll(b, 10)).toBe(2);
  });

  it('admits fractional rates over time and ignores a clock that steps back', () => {
    const clock = fakeClock();
    const b = new TokenBucket({ ratePerSecond: 0.5, clock });
    expect(b.tryTake()).toBe(true);
    expect(b.tryTake()).toBe(false);
    clock.advance(-5_000);
    expect(b.tryTake()).toBe(false);
    clock.advance(2_000);
    expect(b.tryTake()).toBe(true);
  });

  it('available() tells whether a token is there without taking it', () => {
    const clock = fakeClock();
    const b = new TokenBucket({ ratePerSecond: 1, clock });
    expect(b.available()).toBe(true);
    expect(b.available()).toBe(true);
    expect(b.tryTake()).toBe(true);
    expect(b.available()).toBe(false);
    clock.advance(1_000);
    expect(b.available()).toBe(true);
  });

  it('rejects a non-positive rate', () => {
    expect(() => new TokenBucket({ ratePerSecond: 0 })).toThrow(RangeError);
  });
});

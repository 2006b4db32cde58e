import { describe, expect, it } from 'vitest';
import { type ArrivalCounters, arrivalStats, observeArrival } from '../../manager/arrival.js';

const EPOCH = 1;

/** Feeds (session, seq, at) triples and returns the final counters. */
function run(msgs: Array<[number, number, number]>, epoch = EPOCH, start: ArrivalCounters | null = null) {
  let c = start;
  const fresh: boolean[] = [];
  for (const [session, seq, at] of msgs) {
    const o = observeArrival(c, { session, seq }, at, epoch);
    c = o.next;
    fresh.push(o.fresh);
  }
  return { c: c!, fresh };
}

describe('manager-side arrival stats (per-session seq, DESIGN.md)', () => {
  it('counts skipped sequence numbers as missing and tracks the largest gap', () => {
    const { c } = run([
      [1, 0, 0],
      [1, 1, 10_000],
      [1, 4, 20_000], // 2 and 3 missing
      [1, 5, 45_000], // 25 s gap
    ]);
    expect(c.missing).toBe(2);
    expect(c.maxGapS).toBe(25);
    expect(c.received).toBe(4);
    expect(arrivalStats(c, 50_000)).toMatchObject({ missing: 2, maxGapS: 25, sinceLastS: 5, lastSeq: 5, session: 1 });
  });

  it('a duplicate (retained redelivery) or reordered message changes nothing', () => {
    const { c, fresh } = run([
      [1, 0, 0],
      [1, 1, 1000],
      [1, 1, 2000],
      [1, 0, 3000],
    ]);
    expect(fresh).toEqual([true, true, false, false]);
    expect(c).toMatchObject({ lastSeq: 1, missing: 0, received: 2, lastAt: 1000 });
  });

  it('a new session starts fresh counters; an older session is stale', () => {
    const { c, fresh } = run([
      [1, 0, 0],
      [1, 5, 1000],
      [2, 0, 2000],
      [1, 6, 3000],
    ]);
    expect(fresh).toEqual([true, true, true, false]);
    expect(c).toMatchObject({ session: 2, lastSeq: 0, missing: 0, received: 1 });
  });

  it('messages missed while the manager itself was down are not counted as device drops', () => {
    const before = run([
      [1, 0, 0],
      [1, 1, 1000],
    ]).c;
    const after = run([[1, 9, 600_000]], EPOCH + 1, before).c;
    expect(after.missing).toBe(0);
    expect(after.maxGapS).toBe(1);
    // ...but drops within the new run count again.
    const later = run([[1, 11, 601_000]], EPOCH + 1, after).c;
    expect(later.missing).toBe(1);
  });

  it('no data: zeros and nulls, never a pass-looking gap', () => {
    expect(arrivalStats(null, 5)).toEqual({
      session: null,
      lastSeq: null,
      maxGapS: 0,
      sinceLastS: null,
      missing: 0,
      received: 0,
    });
  });
});

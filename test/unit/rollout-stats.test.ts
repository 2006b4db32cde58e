/**
 * Two-sample statistics of baseline-relative gates: reference values (SciPy 1.17
 * `mannwhitneyu`), and properties over random samples: identical distributions fail at about the
 * significance level, a 10% shift with enough samples fails, too few samples are inconclusive.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { compareSamples, mannWhitney, median, normalUpper } from '../../manager/rollout/stats.js';

/** mulberry32: seeded uniform [0, 1). */
function rng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Normal(mean, sd) by Box-Muller. */
function gauss(r: () => number, mean: number, sd: number): number {
  const u = 1 - r();
  const v = r();
  return mean + sd * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function sample(r: () => number, n: number, mean: number, sd: number): number[] {
  return Array.from({ length: n }, () => gauss(r, mean, sd));
}

describe('Mann-Whitney U against SciPy', () => {
  test('exact, no ties', () => {
    const a = mannWhitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], 'less');
    expect(a).toMatchObject({ u: 0, method: 'exact' });
    expect(a.p).toBeCloseTo(0.003968253968253968, 12);
    const x = [3.1, 2.2, 5.5, 1.0, 4.4, 6.6, 7.7, 0.5];
    const y = [8.8, 9.9, 2.5, 10.1, 11.2, 3.3, 12.5];
    expect(mannWhitney(x, y, 'less').p).toBeCloseTo(0.014452214452214451, 12);
    expect(mannWhitney(x, y, 'greater').p).toBeCloseTo(0.9897435897435898, 12);
    expect(mannWhitney(x, y, 'two-sided').p).toBeCloseTo(0.028904428904428903, 12);
    expect(mannWhitney(x, y, 'less').u).toBe(9);
  });

  test('normal approximation with ties and continuity correction', () => {
    const x = [1, 1, 2, 2, 3, 5, 7];
    const y = [2, 3, 3, 4, 4, 6, 8, 9];
    const less = mannWhitney(x, y, 'less');
    expect(less).toMatchObject({ u: 14, method: 'normal', ties: true });
    expect(less.p).toBeCloseTo(0.05745987341577662, 6);
    expect(mannWhitney(x, y, 'greater').p).toBeCloseTo(0.9547946468767016, 6);
    expect(mannWhitney(x, y, 'two-sided').p).toBeCloseTo(0.11491974683155325, 6);
  });

  test('normal approximation on larger samples', () => {
    // biome-ignore format: data
    const x = [11.29, 11.45, 10.07, 9.24, 8.91, 10.03, 8.98, 8.56, 10.2, 10.13, 10.55, 9.09, 10.01, 9.94, 8.49, 10.54, 10.32, 12.39, 10.2, 9.86, 11.23, 10.2, 10.91, 9.63, 10.22, 11.02, 10.7, 10.13, 8.92, 10.45, 10.08, 10.72, 10.22, 11.09, 9.95, 10.2, 10.67, 8.91, 9.6, 9.5];
    // biome-ignore format: data
    const y = [12.48, 10.41, 11.15, 11.12, 10.22, 8.95, 11.46, 10.09, 11.22, 9.19, 10.06, 11.76, 11.93, 9.2, 9.17, 10.46, 11.23, 10.66, 10.8, 9.51, 11.09, 11.62, 10.06, 9.07, 9.74, 11.26, 8.77, 10.41, 9.51, 10.37, 10.26, 10.52, 12.0, 10.92, 11.83];
    const r = mannWhitney(x, y, 'less');
    expect(r.u).toBe(511);
    expect(r.p).toBeCloseTo(0.02263444244285557, 6);
    expect(mannWhitney(x, y, 'two-sided').p).toBeCloseTo(0.04526888488571114, 6);
  });

  test('all values equal: no evidence (p = 1)', () => {
    expect(mannWhitney([2, 2, 2, 2, 2, 2], [2, 2, 2, 2, 2, 2, 2], 'greater').p).toBe(1);
  });

  test('normal tail is accurate far out (early-fail alphas are tiny)', () => {
    expect(normalUpper(0)).toBeCloseTo(0.5, 7);
    expect(normalUpper(1.959963984540054)).toBeCloseTo(0.025, 7);
    expect(normalUpper(4.753424308822899) / 1e-6).toBeCloseTo(1, 4);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
  });
});

describe('compareSamples: verdicts with evidence', () => {
  const opts = { alternative: 'greater', alpha: 0.01, minEffect: 0.05, minSamples: 10 } as const;

  test('too few samples on either side: inconclusive, with the counts', () => {
    const r = compareSamples([1, 2, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], opts);
    expect(r).toMatchObject({ verdict: 'inconclusive', n1: 3, n2: 11, p: null });
    expect(r.reason).toMatch(/too few samples \(3 vs 11; 10 needed/);
  });

  test('a 10% shift over noise fails with medians, p and effect', () => {
    const r0 = rng(7);
    const r = compareSamples(sample(r0, 30, 1.1, 0.02), sample(r0, 60, 1.0, 0.02), opts);
    expect(r.verdict).toBe('fail');
    expect(r.effect).toBeGreaterThan(0.08);
    expect(r.p).toBeLessThan(1e-6);
    expect(r).toMatchObject({ n1: 30, n2: 60, alternative: 'greater' });
    expect(r.reason).toMatch(/sustained deviation: median 1\.1\d* vs 1\.0\d*|sustained deviation: median 1\.0\d+ vs/);
  });

  test('significant but below the minimum effect: pass, and says why', () => {
    const r0 = rng(3);
    // 2% shift with tiny noise: clearly significant, but under the 5% minimum effect.
    const r = compareSamples(sample(r0, 200, 1.02, 0.001), sample(r0, 200, 1.0, 0.001), opts);
    expect(r.verdict).toBe('pass');
    expect(r.p).toBeLessThan(0.001);
    expect(r.reason).toMatch(/smaller than the minimum effect/);
  });

  test('the direction matters: a faster line never fails a "must not grow" comparison', () => {
    const r0 = rng(11);
    const r = compareSamples(sample(r0, 50, 0.8, 0.02), sample(r0, 50, 1.0, 0.02), opts);
    expect(r.verdict).toBe('pass');
    expect(
      compareSamples(sample(r0, 50, 0.8, 0.02), sample(r0, 50, 1.0, 0.02), { ...opts, alternative: 'less' }).verdict,
    ).toBe('fail');
  });

  test('baseline median 0 (no protocol errors before): the absolute minimum applies', () => {
    const zeros = Array.from({ length: 30 }, () => 0);
    const some = Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? 0.5 : 0.4));
    expect(compareSamples(some, zeros, { ...opts, minAbsEffect: 0.1 }).verdict).toBe('fail');
    expect(compareSamples(some, zeros, { ...opts, minAbsEffect: 1 }).verdict).toBe('pass');
  });
});

describe('properties', () => {
  test('identical distributions fail at about alpha (false-alarm rate, no minimum effect)', () => {
    // Each run: 400 comparisons of two samples from the same distribution; the share that fails
    // must stay near alpha = 0.05 (binomial sd ~ 1.1%, bound at ~3.5 sd).
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.integer({ min: 12, max: 40 }), (seed, n) => {
        const r = rng(seed);
        let fails = 0;
        const runs = 400;
        for (let i = 0; i < runs; i++) {
          const v = compareSamples(sample(r, n, 5, 1), sample(r, n + 5, 5, 1), {
            alternative: 'greater',
            alpha: 0.05,
            minEffect: 0,
            minSamples: 10,
          });
          if (v.verdict === 'fail') fails++;
        }
        return fails / runs <= 0.05 + 0.04;
      }),
      { numRuns: 8 },
    );
  });

  test('with a 1% minimum effect, noise alone almost never fails', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
        const r = rng(seed);
        let fails = 0;
        for (let i = 0; i < 300; i++) {
          const v = compareSamples(sample(r, 20, 1.2, 0.012), sample(r, 60, 1.2, 0.012), {
            alternative: 'greater',
            alpha: 0.01,
            minEffect: 0.01,
            minSamples: 10,
          });
          if (v.verdict === 'fail') fails++;
        }
        return fails <= 3;
      }),
      { numRuns: 6 },
    );
  });

  test('a 10% shift with enough samples fails (noise sd up to 3%)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.integer({ min: 20, max: 60 }),
        fc.double({ min: 0.001, max: 0.03, noNaN: true }),
        (seed, n, sd) => {
          const r = rng(seed);
          const v = compareSamples(sample(r, n, 1.1, sd), sample(r, n, 1.0, sd), {
            alternative: 'greater',
            alpha: 0.01,
            minEffect: 0.05,
            minSamples: 10,
          });
          return v.verdict === 'fail';
        },
      ),
      { numRuns: 200 },
    );
  });

  test('fewer samples than the minimum on a side: always inconclusive', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { maxLength: 9 }),
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 0, maxLength: 50 }),
        fc.boolean(),
        (a, b, swap) => {
          const [x, y] = swap ? [b, a] : [a, b];
          return (
            compareSamples(x, y, { alternative: 'two-sided', alpha: 0.05, minEffect: 0, minSamples: 10 }).verdict ===
            'inconclusive'
          );
        },
      ),
    );
  });

  test('p-values are probabilities and one-sided tails are consistent', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 30 }),
        fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 30 }),
        (x, y) => {
          const g = mannWhitney(x, y, 'greater');
          const l = mannWhitney(x, y, 'less');
          const t = mannWhitney(x, y, 'two-sided');
          const inRange = [g.p, l.p, t.p].every((p) => p >= 0 && p <= 1);
          // The two one-sided tails overlap at most in the observed U itself.
          return inRange && g.p + l.p >= 1 - 1e-9 && t.p >= Math.min(g.p, l.p) - 1e-9;
        },
      ),
    );
  });
});

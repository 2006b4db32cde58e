/**
 * Two-sample statistics for baseline-relative gates (docs/rollouts.md "Statistics"): is a
 * deviation between the samples of the updated devices and the baseline samples *sustained*, or
 * noise? Pure and deterministic.
 *
 * The test is Mann-Whitney U (Wilcoxon rank-sum): it compares whole distributions through ranks,
 * needs no normality (KPIs are skewed, error rates are mostly zeros with spikes) and is robust to
 * outliers. Small samples without ties use the exact null distribution; otherwise the normal
 * approximation with the tie-corrected variance and a continuity correction. A significant p-value
 * is not enough to fail: the medians must differ by at least a minimum effect size too, so that a
 * large sample does not turn a tiny, harmless shift into a stop. Too few samples on either side is
 * `inconclusive`, never a pass.
 */

export type Alternative = 'greater' | 'less' | 'two-sided';
export type StatVerdict = 'pass' | 'fail' | 'inconclusive';

export interface MannWhitney {
  /** U of the first sample: the number of (x, y) pairs with x > y, ties counting 1/2. */
  readonly u: number;
  /** Standard score of U (continuity-corrected), 0 when exact or degenerate. */
  readonly z: number;
  readonly p: number;
  readonly method: 'exact' | 'normal';
  /** The samples hold tied values (the variance was corrected for them). */
  readonly ties: boolean;
}

/** Largest sample sizes for the exact distribution (20 x 20 = 400 U values: a small table). */
export const EXACT_MAX_N = 20;

/** erfc with fractional error below 1.2e-7 everywhere (Numerical Recipes `erfcc`), so tiny p-values stay accurate. */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/** P(Z >= z) for a standard normal Z. */
export function normalUpper(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/**
 * Counts of U = 0..m*n under the null hypothesis for sizes m, n (no ties): the number of
 * arrangements with that U, by the recurrence f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u).
 */
const exactCache = new Map<string, Float64Array>();
function exactCounts(m: number, n: number): Float64Array {
  const key = `${m},${n}`;
  const hit = exactCache.get(key);
  if (hit) return hit;
  // rows[j] = distribution for (i, j) as i grows; start with i = 0: one arrangement, U = 0.
  let prev: Float64Array[] = [];
  for (let j = 0; j <= n; j++) prev.push(Float64Array.of(1));
  for (let i = 1; i <= m; i++) {
    const cur: Float64Array[] = [Float64Array.of(1)];
    for (let j = 1; j <= n; j++) {
      const f = new Float64Array(i * j + 1);
      const a = prev[j] as Float64Array; // (i-1, j): shifted by j (the new x is above all j ys)
      const b = cur[j - 1] as Float64Array; // (i, j-1)
      for (let u = 0; u < a.length; u++) f[u + j] = (f[u + j] as number) + (a[u] as number);
      for (let u = 0; u < b.length; u++) f[u] = (f[u] as number) + (b[u] as number);
      cur.push(f);
    }
    prev = cur;
  }
  const out = prev[n] as Float64Array;
  exactCache.set(key, out);
  return out;
}

/** P(U >= u) under the null, exactly. */
function exactUpper(m: number, n: number, u: number): number {
  const f = exactCounts(m, n);
  let total = 0;
  let tail = 0;
  for (let k = 0; k < f.length; k++) {
    total += f[k] as number;
    if (k >= u - 1e-9) tail += f[k] as number;
  }
  return tail / total;
}

/**
 * Mann-Whitney U test of `x` against `y`. `greater`: the alternative is that x tends to be larger
 * than y (small p = evidence that it is). Both samples must be non-empty.
 */
export function mannWhitney(x: readonly number[], y: readonly number[], alternative: Alternative): MannWhitney {
  const m = x.length;
  const n = y.length;
  if (m === 0 || n === 0) return { u: 0, z: 0, p: 1, method: 'normal', ties: false };
  const all = [...x.map((v) => ({ v, first: true })), ...y.map((v) => ({ v, first: false }))].sort((a, b) => a.v - b.v);
  // Average ranks over runs of ties; sum of t^3 - t for the variance correction.
  let r1 = 0;
  let tieTerm = 0;
  for (let i = 0; i < all.length; ) {
    let j = i;
    while (j + 1 < all.length && (all[j + 1] as { v: number }).v === (all[i] as { v: number }).v) j++;
    const t = j - i + 1;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) if ((all[k] as { first: boolean }).first) r1 += rank;
    if (t > 1) tieTerm += t * t * t - t;
    i = j + 1;
  }
  const u = r1 - (m * (m + 1)) / 2;
  const ties = tieTerm > 0;
  const mean = (m * n) / 2;
  if (!ties && m <= EXACT_MAX_N && n <= EXACT_MAX_N) {
    const upper = exactUpper(m, n, u); // P(U >= u)
    const lower = exactUpper(m, n, m * n - u); // P(U <= u) by symmetry of the null distribution
    const p =
      alternative === 'greater' ? upper : alternative === 'less' ? lower : Math.min(1, 2 * Math.min(upper, lower));
    return { u, z: 0, p, method: 'exact', ties };
  }
  const total = m + n;
  const variance = ((m * n) / 12) * (total + 1 - tieTerm / (total * (total - 1)));
  if (variance <= 0) {
    // Every value is the same: no evidence of any difference.
    return { u, z: 0, p: 1, method: 'normal', ties };
  }
  const sd = Math.sqrt(variance);
  const d = u - mean;
  // Continuity correction: U moves in steps of 1/2 with ties, 1 without; 0.5 toward the mean is the usual choice.
  const zOf = (diff: number) => diff / sd;
  let z: number;
  let p: number;
  if (alternative === 'greater') {
    z = zOf(d - 0.5);
    p = normalUpper(z);
  } else if (alternative === 'less') {
    z = zOf(d + 0.5);
    p = normalUpper(-z);
  } else {
    z = zOf(Math.sign(d) * Math.max(Math.abs(d) - 0.5, 0));
    p = Math.min(1, 2 * normalUpper(Math.abs(z)));
  }
  return { u, z, p, method: 'normal', ties };
}

export interface CompareOptions {
  /** `greater`: fail when the first sample is larger (e.g. cycle time must not grow). */
  readonly alternative: Alternative;
  /** Significance level of the U test. */
  readonly alpha: number;
  /**
   * Smallest difference of the medians, relative to the second sample's median, that counts as a
   * deviation (0.05 = 5%); in the direction of the alternative.
   */
  readonly minEffect: number;
  /** Smallest absolute difference of the medians (for baselines near 0); default 0. */
  readonly minAbsEffect?: number;
  /** Samples each side needs before a verdict other than inconclusive. */
  readonly minSamples: number;
}

export interface StatEvidence {
  readonly verdict: StatVerdict;
  /** Why, in words an operator reads in the report. */
  readonly reason: string;
  readonly n1: number;
  readonly n2: number;
  /** Medians of the two samples (null when a side is empty). */
  readonly median1: number | null;
  readonly median2: number | null;
  readonly u: number | null;
  readonly p: number | null;
  readonly method: MannWhitney['method'] | null;
  /** (median1 - median2) / |median2| (null when median2 is 0 or a side is empty). */
  readonly effect: number | null;
  readonly alpha: number;
  readonly minEffect: number;
  readonly minSamples: number;
  readonly alternative: Alternative;
}

function round(v: number, digits = 6): number {
  return Number(v.toPrecision(digits));
}

/**
 * Is `x` deviating from `y` in the direction of `alternative`, sustainedly? `fail` needs both a
 * significant U test (p < alpha) and a median difference of at least the minimum effect size in
 * that direction; `inconclusive` when either side has fewer than `minSamples` values.
 */
export function compareSamples(x: readonly number[], y: readonly number[], o: CompareOptions): StatEvidence {
  const base = {
    n1: x.length,
    n2: y.length,
    alpha: o.alpha,
    minEffect: o.minEffect,
    minSamples: o.minSamples,
    alternative: o.alternative,
  };
  const m1 = x.length > 0 ? median(x) : null;
  const m2 = y.length > 0 ? median(y) : null;
  const effect = m1 !== null && m2 !== null && m2 !== 0 ? round((m1 - m2) / Math.abs(m2)) : null;
  const medians = { median1: m1 === null ? null : round(m1), median2: m2 === null ? null : round(m2), effect };
  if (x.length < o.minSamples || y.length < o.minSamples) {
    return {
      ...base,
      ...medians,
      verdict: 'inconclusive',
      reason: `too few samples (${x.length} vs ${y.length}; ${o.minSamples} needed on each side)`,
      u: null,
      p: null,
      method: null,
    };
  }
  const t = mannWhitney(x, y, o.alternative);
  const diff = (m1 as number) - (m2 as number);
  const scale = Math.abs(m2 as number);
  const needed = Math.max(o.minEffect * scale, o.minAbsEffect ?? 0);
  // The deviation in the direction the alternative looks for (two-sided: either way).
  const signed = o.alternative === 'greater' ? diff : o.alternative === 'less' ? -diff : Math.abs(diff);
  const large = signed > needed;
  const significant = t.p < o.alpha;
  const fields = { ...base, ...medians, u: t.u, p: t.p < 1e-12 ? 0 : round(t.p, 4), method: t.method };
  const pct = effect === null ? `${round(diff, 4)}` : `${round(effect * 100, 3)}%`;
  if (significant && large) {
    return {
      ...fields,
      verdict: 'fail',
      reason: `sustained deviation: median ${fields.median1} vs ${fields.median2} (${pct}), p=${fields.p} < ${o.alpha}`,
    };
  }
  const why = !significant
    ? `not significant (p=${fields.p}, alpha ${o.alpha})`
    : `significant but smaller than the minimum effect (${pct}, minimum ${round(o.minEffect * 100, 3)}%)`;
  return { ...fields, verdict: 'pass', reason: `no sustained deviation: ${why}` };
}

/**
 * Benchmark helpers. The machine is shared and noisy: every figure is a median (and p99 where a
 * tail matters) of repeated runs, and comparisons are ratios measured in the same run.
 */

export interface Figure {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** A goal from the issues, e.g. `<= 5` (same unit); printed as met or missed, never asserted. */
  readonly goal?: { readonly op: '<=' | '>='; readonly value: number };
  readonly note?: string;
}

export interface Bench {
  readonly name: string;
  readonly description: string;
  /** `quick` runs a smaller size (the test suite's smoke run and `npm run bench -- --quick`). */
  run(opts: { quick: boolean; log: (line: string) => void }): Promise<Figure[]>;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export function stats(samples: readonly number[]): {
  median: number;
  p99: number;
  min: number;
  max: number;
  n: number;
} {
  const s = [...samples].sort((a, b) => a - b);
  return {
    median: percentile(s, 50),
    p99: percentile(s, 99),
    min: s[0] ?? Number.NaN,
    max: s.at(-1) ?? Number.NaN,
    n: s.length,
  };
}

/** Times `fn` `n` times (after `warmup` runs) and returns per-call milliseconds. */
export function timeSync(fn: () => unknown, n: number, warmup = Math.min(10, n)): number[] {
  for (let i = 0; i < warmup; i++) fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    fn();
    out.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return out;
}

export async function timeAsync(fn: () => Promise<unknown>, n: number, warmup = Math.min(3, n)): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await fn();
    out.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return out;
}

export function goalMet(f: Figure): boolean | undefined {
  if (!f.goal) return undefined;
  return f.goal.op === '<=' ? f.value <= f.goal.value : f.value >= f.goal.value;
}

export function formatFigure(f: Figure): string {
  const v =
    Math.abs(f.value) >= 100
      ? f.value.toFixed(0)
      : Math.abs(f.value) >= 1
        ? f.value.toFixed(2)
        : f.value.toPrecision(3);
  const met = goalMet(f);
  const goal = f.goal ? `  goal ${f.goal.op} ${f.goal.value} ${f.unit}: ${met ? 'met' : 'MISSED'}` : '';
  return `${f.name.padEnd(58)} ${v.padStart(10)} ${f.unit}${goal}${f.note ? `  (${f.note})` : ''}`;
}

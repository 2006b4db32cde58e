/**
 * What every campaign area returns, and the table `npm run reliability` prints. "Survived" means
 * every check of the case held; a failed case keeps a one-line reason (the first few are shown).
 */
export interface AreaResult {
  readonly area: string;
  /** What one case is, e.g. "SIGKILL point", "fuzz input", "attack". */
  readonly unit: string;
  readonly tried: number;
  readonly survived: number;
  readonly failed: number;
  readonly ms: number;
  /** Why cases failed (first ones), each with enough context to reproduce. */
  readonly failures: readonly string[];
  /** Breakdowns worth recording (cases per phase, per target, per attack, ...). */
  readonly notes: Readonly<Record<string, unknown>>;
  /** Set when the area did not run (e.g. waits for another part); the reason is printed. */
  readonly skipped?: string;
}

/** Collects cases of one area. */
export class Tally {
  private tried = 0;
  private survived = 0;
  private readonly failures: string[] = [];
  readonly notes: Record<string, unknown> = {};
  private readonly started = Date.now();

  constructor(
    readonly area: string,
    readonly unit: string,
  ) {}

  /** One case: `problems` empty means it survived. */
  record(problems: readonly string[], label: string): boolean {
    this.tried++;
    if (problems.length === 0) {
      this.survived++;
      return true;
    }
    if (this.failures.length < 50) this.failures.push(`${label}: ${problems.join('; ')}`);
    return false;
  }

  /** Adds `n` cases at once (fuzzing counts cases in bulk). */
  bulk(tried: number, failures: readonly string[]): void {
    this.tried += tried;
    this.survived += tried - failures.length;
    for (const f of failures) if (this.failures.length < 50) this.failures.push(f);
  }

  /** Adds to a named breakdown in the notes, e.g. count('byPhase', 'trial'). */
  count(group: string, key: string, by = 1): void {
    const m = (this.notes[group] ?? {}) as Record<string, number>;
    m[key] = (m[key] ?? 0) + by;
    this.notes[group] = m;
  }

  result(): AreaResult {
    return {
      area: this.area,
      unit: this.unit,
      tried: this.tried,
      survived: this.survived,
      failed: this.tried - this.survived,
      ms: Date.now() - this.started,
      failures: [...this.failures],
      notes: { ...this.notes },
    };
  }
}

export function skipped(area: string, unit: string, reason: string): AreaResult {
  return { area, unit, tried: 0, survived: 0, failed: 0, ms: 0, failures: [], notes: {}, skipped: reason };
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

/** The summary table (plain text, aligned; Markdown-compatible so docs/reliability.md can take it as is). */
export function formatTable(results: readonly AreaResult[]): string {
  const rows = results.map((r) => [
    r.area,
    r.unit,
    r.skipped ? '-' : r.tried.toLocaleString('en-US'),
    r.skipped ? '-' : r.survived.toLocaleString('en-US'),
    r.skipped ? '-' : r.failed.toLocaleString('en-US'),
    r.skipped ? `not run: ${r.skipped}` : `${(r.ms / 1000).toFixed(1)} s`,
  ]);
  const head = ['area', 'case', 'tried', 'survived', 'failed', 'time'];
  const total = results.filter((r) => !r.skipped);
  rows.push([
    'total',
    '',
    total.reduce((a, r) => a + r.tried, 0).toLocaleString('en-US'),
    total.reduce((a, r) => a + r.survived, 0).toLocaleString('en-US'),
    total.reduce((a, r) => a + r.failed, 0).toLocaleString('en-US'),
    `${(total.reduce((a, r) => a + r.ms, 0) / 1000).toFixed(1)} s`,
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = [false, false, true, true, true, false];
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => pad(c, width[i] ?? 0, numeric[i])).join(' | ')} |`;
  const sep = `| ${width.map((w, i) => (numeric[i] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
  return [line(head), sep, ...rows.map(line)].join('\n');
}

/**
 * Small fixed-size rings for the dashboard's plots. A device's health and telemetry history is
 * numbers only, kept in one Float64Array per device and channel (32 samples x 5 columns = 1.3 KB),
 * so 10,000 devices cost ~26 MB, not a heap of small objects.
 */

export class NumericRing<C extends string> {
  private readonly data: Float64Array;
  private next = 0;
  private count = 0;

  constructor(
    private readonly columns: readonly C[],
    readonly capacity: number,
  ) {
    this.data = new Float64Array(columns.length * capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Appends one row (missing columns are NaN, shown as gaps). */
  push(row: Readonly<Partial<Record<C, number>>>): void {
    const base = this.next * this.columns.length;
    this.columns.forEach((c, i) => {
      const v = row[c];
      this.data[base + i] = v === undefined ? Number.NaN : v;
    });
    this.next = (this.next + 1) % this.capacity;
    this.count = Math.min(this.count + 1, this.capacity);
  }

  /** The value of `column` in the newest row, if any. */
  last(column: C): number | undefined {
    if (this.count === 0) return undefined;
    const row = (this.next - 1 + this.capacity) % this.capacity;
    return this.data[row * this.columns.length + this.columns.indexOf(column)];
  }

  /** Oldest first, one array per column; NaN becomes null so JSON keeps the gap. */
  toColumns(): Record<C, Array<number | null>> {
    const out = Object.fromEntries(this.columns.map((c) => [c, [] as Array<number | null>])) as Record<
      C,
      Array<number | null>
    >;
    const start = this.count < this.capacity ? 0 : this.next;
    for (let k = 0; k < this.count; k++) {
      const base = ((start + k) % this.capacity) * this.columns.length;
      this.columns.forEach((c, i) => {
        const v = this.data[base + i]!;
        out[c].push(Number.isNaN(v) ? null : v);
      });
    }
    return out;
  }
}

/** A ring of objects (the fleet series: one sample every few seconds, an hour's worth). */
export class Ring<T> {
  private readonly items: T[] = [];
  private next = 0;

  constructor(readonly capacity: number) {}

  push(item: T): void {
    if (this.items.length < this.capacity) this.items.push(item);
    else this.items[this.next] = item;
    this.next = (this.next + 1) % this.capacity;
  }

  /** Oldest first. */
  toArray(): T[] {
    if (this.items.length < this.capacity) return [...this.items];
    return [...this.items.slice(this.next), ...this.items.slice(0, this.next)];
  }
}

export const TELEMETRY_COLUMNS = ['ts', 'gap', 'drops', 'rate', 'missing'] as const;
export const HEALTH_COLUMNS = ['ts', 'healthy', 'adapter', 'restarts', 'uptime'] as const;
export type TelemetryColumn = (typeof TELEMETRY_COLUMNS)[number];
export type HealthColumn = (typeof HEALTH_COLUMNS)[number];

/**
 * The A/B switch transaction of the agent's SqliteSlotStore on a real file (issue "Agent",
 * benchmarks: p99 <= 5 ms with synchronous=FULL). Each sample is one `switchTo` (one IMMEDIATE
 * transaction, WAL fsync'd on commit) from a committed slot to the staged other one; a `revert`
 * (the same kind of transaction, timed separately) puts the store back so the next sample is the
 * same switch again. NORMAL is measured on the same store for comparison: the store refuses to
 * open without FULL, so the bench lowers it on the open handle (`store.db`), which the agent never does.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SqliteSlotStore } from '../agent/sqlite-slot-store.js';
import type { SlotName } from '../protocol/messages.js';
import { tempDir } from './kit.js';
import { type Bench, type Figure, formatFigure, stats } from './lib.js';

export interface SlotSwitchResult {
  readonly synchronous: 'FULL' | 'NORMAL';
  readonly switchMs: ReturnType<typeof stats>;
  readonly revertMs: ReturnType<typeof stats>;
}

const fakeSnapshot = (n: number) => n.toString(16).padStart(64, '0');

function fill(store: SqliteSlotStore, slot: SlotName, n: number, payload: Uint8Array): void {
  store.beginDownload(slot, {
    snapshot: fakeSnapshot(n),
    manifest: new Uint8Array(400).fill(n),
    size: payload.byteLength,
    generation: n,
  });
  store.appendChunk(slot, 0, payload);
  store.markStaged(slot);
}

/** `switches` timed switchTo + revert pairs on a fresh store file in `dir` (default: a temp dir). */
export function measureSlotSwitch(opts: {
  switches: number;
  synchronous: 'FULL' | 'NORMAL';
  dir?: string;
}): SlotSwitchResult {
  const dir = opts.dir ?? tempDir('slots');
  const store = new SqliteSlotStore(join(dir, `slots-${opts.synchronous.toLowerCase()}.db`));
  try {
    if (opts.synchronous === 'NORMAL') store.db.pragma('synchronous = NORMAL');
    const payload = new Uint8Array(16 * 1024).fill(7);
    // B runs committed; A is staged: every sample switches to A and reverts to B.
    fill(store, 'B', 1, payload);
    store.switchTo('B');
    store.commit();
    fill(store, 'A', 2, payload);
    const sw: number[] = [];
    const rv: number[] = [];
    const warmup = Math.min(20, opts.switches);
    for (let i = 0; i < warmup + opts.switches; i++) {
      const t0 = process.hrtime.bigint();
      store.switchTo('A');
      const t1 = process.hrtime.bigint();
      store.revert({ markBad: false, generation: 2 });
      const t2 = process.hrtime.bigint();
      if (i < warmup) continue;
      sw.push(Number(t1 - t0) / 1e6);
      rv.push(Number(t2 - t1) / 1e6);
    }
    if (store.boot().active !== 'B' || store.slot('A').state !== 'staged') throw new Error('store not back on B');
    return { synchronous: opts.synchronous, switchMs: stats(sw), revertMs: stats(rv) };
  } finally {
    store.close();
    if (!opts.dir) rmSync(dir, { recursive: true, force: true });
  }
}

export function slotSwitchFigures(full: SlotSwitchResult, normal: SlotSwitchResult | null): Figure[] {
  const figures: Figure[] = [
    { name: 'switch transaction, synchronous=FULL (median)', value: full.switchMs.median, unit: 'ms' },
    {
      name: 'switch transaction, synchronous=FULL (p99)',
      value: full.switchMs.p99,
      unit: 'ms',
      goal: { op: '<=', value: 5 },
      note: `n=${full.switchMs.n}, max ${full.switchMs.max.toFixed(2)} ms`,
    },
    { name: 'revert transaction, synchronous=FULL (p99)', value: full.revertMs.p99, unit: 'ms' },
  ];
  if (normal) {
    figures.push(
      { name: 'switch transaction, synchronous=NORMAL (median)', value: normal.switchMs.median, unit: 'ms' },
      {
        name: 'switch transaction, synchronous=NORMAL (p99)',
        value: normal.switchMs.p99,
        unit: 'ms',
        note: 'not durable: comparison only',
      },
    );
  }
  return figures;
}

export const slotSwitchBench: Bench = {
  name: 'slot-switch',
  description: 'A/B switch transaction of the SQLite slot store on a real file (WAL, synchronous=FULL vs NORMAL)',
  async run({ quick, log }) {
    const switches = quick ? 200 : 2_000;
    const full = measureSlotSwitch({ switches, synchronous: 'FULL' });
    const normal = measureSlotSwitch({ switches, synchronous: 'NORMAL' });
    log(
      `${switches} switches: FULL median ${full.switchMs.median.toFixed(3)} ms p99 ${full.switchMs.p99.toFixed(3)} ms; ` +
        `NORMAL median ${normal.switchMs.median.toFixed(3)} ms p99 ${normal.switchMs.p99.toFixed(3)} ms`,
    );
    return slotSwitchFigures(full, normal);
  },
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const figures = await slotSwitchBench.run({ quick: process.argv.includes('--quick'), log: console.log });
  for (const f of figures) console.log(formatFigure(f));
}

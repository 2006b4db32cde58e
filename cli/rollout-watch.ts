/**
 * The live view of `fleetgate rollout watch`. On a terminal: a progress bar per stage (devices
 * with a verdict out of the stage's devices) with cli-progress, a line per gate (the threshold as
 * written and the values seen) and a failure summary, redrawn in place. Elsewhere (a pipe, a CI
 * log): one plain line each time something changed.
 */
import cliProgress from 'cli-progress';
import type { RolloutDetail } from '../manager/rollout-views.js';
import { gateTotals, progressLine, signalText } from './rollout-format.js';

type Bar = cliProgress.SingleBar;

export class WatchView {
  private multi: cliProgress.MultiBar | null = null;
  private header: Bar | null = null;
  private stages: Bar[] = [];
  private gates: Bar[] = [];
  private failures: Bar | null = null;
  private lastLine = '';

  constructor(private readonly tty: boolean) {}

  render(d: RolloutDetail): void {
    if (!this.tty) {
      const line = progressLine(d);
      if (line !== this.lastLine) process.stdout.write(`${new Date().toISOString()} ${line}\n`);
      this.lastLine = line;
      return;
    }
    if (!this.multi) this.build(d);
    const r = d.report;
    this.header?.update(0, {
      text: `rollout ${r.id}  ${r.snapshotLabel}  ${r.phase}${r.stage ? ` (stage ${r.stage})` : ''}${r.stop ? `  stopped: ${r.stop.detail}` : ''}`,
    });
    r.stages.forEach((s, i) => {
      const done = s.counts.succeeded + s.counts.failed + s.counts.skipped;
      this.stages[i]?.update(done, {
        phase: s.phase,
        ok: s.counts.succeeded,
        failed: s.counts.failed,
        skipped: s.counts.skipped,
        flight: s.counts.assigned + s.counts.downloading + s.counts.trial + s.counts.holding,
      });
    });
    const totals = gateTotals(r.stages);
    d.gates.forEach((g, i) => {
      const e = totals.get(g.name);
      const values = e
        ? Object.entries(e.signals)
            .map(([n, v]) => signalText(n, v))
            .join(', ')
        : '';
      this.gates[i]?.update(0, {
        text: `  gate ${g.name}: ${g.source}  ->  ${e ? `pass ${e.pass}, fail ${e.fail}, inconclusive ${e.inconclusive}` : 'not evaluated yet'}${values ? `  [${values}]` : ''}`,
      });
    });
    const f = r.failures;
    this.failures?.update(0, {
      text: f.length
        ? `  failures: ${f.map((g) => `${g.category} ${g.count} (e.g. ${g.examples[0]?.device ?? '?'})`).join(', ')}`
        : '  failures: none',
    });
  }

  /** A transient remark (manager unreachable). */
  note(text: string): void {
    if (this.multi) this.multi.log(`${text}\n`);
    else if (text !== this.lastLine) process.stdout.write(`${new Date().toISOString()} ${text}\n`);
    this.lastLine = text;
  }

  stop(): void {
    this.multi?.stop();
    this.multi = null;
  }

  private build(d: RolloutDetail): void {
    const multi = new cliProgress.MultiBar(
      {
        stream: process.stdout,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        autopadding: true,
        barsize: 24,
        format:
          '  {name} |{bar}| {value}/{total} {phase}  ok {ok}  failed {failed}  skipped {skipped}  in flight {flight}',
      },
      cliProgress.Presets.shades_classic,
    );
    const text = { format: '{text}' };
    this.header = multi.create(1, 0, { text: '' }, text);
    const width = Math.max(...d.report.stages.map((s) => s.name.length), 4);
    this.stages = d.report.stages.map((s) =>
      multi.create(Math.max(1, s.devices), 0, {
        name: `${s.name}${s.canary ? '*' : ''}`.padEnd(width + 1),
        phase: s.phase,
        ok: 0,
        failed: 0,
        skipped: 0,
        flight: 0,
      }),
    );
    this.gates = d.gates.map(() => multi.create(1, 0, { text: '' }, text));
    this.failures = multi.create(1, 0, { text: '' }, text);
    this.multi = multi;
  }
}

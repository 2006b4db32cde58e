/**
 * One trial of a supervised snapshot: drives the pure TrialMonitor with real timers (periodic
 * evaluation, the end of the window, a backstop) and runs the acceptance suite. The supervisor
 * owns the process; this owns the decision (docs/runtime-contract.md "Trial").
 */
import type { Logger } from 'pino';
import type { Signals } from '../protocol/gates/index.js';
import type { AcceptanceSpec } from '../protocol/manifest.js';
import type { RuntimeEventName, RuntimeEvents } from './runtime-contract.js';
import { type AcceptanceRun, runAcceptance } from './supervisor-acceptance.js';
import type { TrialDecision, TrialMonitor } from './trial-monitor.js';

export interface TrialHost {
  readonly logger: Logger;
  readonly staleMs: number;
  readonly evalIntervalMs: number;
  readonly stopGraceMs: number;
  now(): number;
  /** The runtime's signals as gates read them, at now. */
  signals(): Signals;
  emit<K extends RuntimeEventName>(event: K, payload: RuntimeEvents[K]): void;
}

export class TrialRun {
  private readonly timers = new Set<NodeJS.Timeout>();
  private acceptance: AcceptanceRun | null = null;
  private acceptanceStarted = false;
  private reported = false;
  private stopped = false;

  constructor(
    readonly monitor: TrialMonitor,
    private readonly suite: AcceptanceSpec | null,
    private readonly ctx: { snapshot: string; dir: string; env: Record<string, string> },
    private readonly host: TrialHost,
  ) {}

  get decision(): TrialDecision | null {
    return this.monitor.decision;
  }

  start(): void {
    const m = this.monitor;
    if (m.decision) {
      this.report(m.decision);
      return;
    }
    const { host } = this;
    this.timer(host.evalIntervalMs, () => this.evaluate(), true);
    const untilEnd = Math.max(0, m.endsAt - host.now());
    this.timer(untilEnd, () => this.evaluate());
    // Last resort when an acceptance suite never reports: its timeout, its start delay, the grace.
    const backstop = untilEnd + (this.suite ? this.suite.timeout_s * 1000 + host.staleMs : 0) + host.stopGraceMs + 1000;
    this.timer(backstop, () => {
      if (!m.decision) this.report(m.finish(host.signals(), host.now()));
    });
    // The suite starts at the first healthy report, or after the stale window without one.
    if (this.suite) this.timer(host.staleMs, () => this.onHealthy());
  }

  evaluate(): void {
    if (this.stopped || this.monitor.decision) return;
    const d = this.monitor.evaluate(this.host.signals(), this.host.now());
    if (d) this.report(d);
  }

  /** A runtime restart; true when it completed a crash loop. */
  restart(at: number, restarts: number): boolean {
    if (this.stopped || this.monitor.decision) return false;
    const d = this.monitor.recordRestart(at);
    if (!d) return false;
    const within = this.monitor.spec.crash_loop.within_s;
    this.host.emit('crash_loop', { snapshot: this.ctx.snapshot, restarts, within_s: within, trial: true });
    this.report(d);
    return true;
  }

  /** The runtime reported healthy (or the wait for it is over): time for the acceptance suite. */
  onHealthy(): void {
    const suite = this.suite;
    if (!suite || this.stopped || this.monitor.decision || this.acceptanceStarted) return;
    this.acceptanceStarted = true;
    const log = this.host.logger.child({ snapshot: this.ctx.snapshot, stream: 'acceptance' });
    log.info({ command: suite.command, timeout_s: suite.timeout_s }, 'acceptance suite started');
    const run = runAcceptance(suite, { cwd: this.ctx.dir, env: this.ctx.env, logger: log, graceMs: 1000 });
    this.acceptance = run;
    void run.result.then((r) => {
      this.acceptance = null;
      if (this.stopped || this.monitor.decision) return;
      this.host.emit('acceptance', r);
      const d = this.monitor.recordAcceptance(r, this.host.now());
      if (d) this.report(d);
      else this.evaluate();
    });
  }

  /** Ends timers and a running suite; the decision, if any, stays readable. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimers();
    if (this.acceptance) await this.acceptance.cancel();
  }

  private report(d: TrialDecision): void {
    if (this.reported) return;
    this.reported = true;
    // The trial is over: no more evaluations. The runtime stays supervised (restarts go on) until
    // the update machine commits or reverts.
    this.clearTimers();
    if (d.result === 'fail' && this.acceptance) void this.acceptance.cancel();
    const log = this.host.logger;
    if (d.result === 'pass') log.info({ snapshot: this.ctx.snapshot, evidence: d.evidence }, 'trial passed');
    else
      log.warn({ snapshot: this.ctx.snapshot, code: d.code, category: d.category, detail: d.detail }, 'trial failed');
    this.host.emit('trial', d);
  }

  private timer(ms: number, fn: () => void, repeat = false): void {
    const t = repeat
      ? setInterval(fn, ms)
      : setTimeout(() => {
          this.timers.delete(t);
          fn();
        }, ms);
    this.timers.add(t);
  }

  private clearTimers(): void {
    // clearTimeout also clears intervals (one id space in Node).
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

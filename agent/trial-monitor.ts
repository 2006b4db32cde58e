/**
 * Decides a trial (DESIGN.md "Agent update state machine": trial -> committed | reverting).
 *
 * Pure and time-injected: every input carries its time, nothing reads a clock or sets a timer, so
 * unit tests drive every path on fake time. The rules (docs/runtime-contract.md "Trial"):
 *  - Gates must HOLD for the whole window: a `fail` verdict at any evaluation fails the trial with
 *    the gate's category (health_gate / telemetry_gate / behavior_gate).
 *  - Crash loop: `crash_loop.restarts` runtime restarts within `crash_loop.within_s` seconds, or
 *    more agent starts during the trial than `max_agent_starts`, fails with crash_loop.
 *  - The manifest's acceptance suite, when it has one, must exit 0: otherwise behavior_gate.
 *  - At the end of the window every gate must pass. A gate still inconclusive then (a signal never
 *    arrived) fails with category `timeout`: DESIGN.md "No data from a device within its deadline
 *    is inconclusive/timeout, never a pass." The end waits for a running acceptance suite, which
 *    its own timeout bounds.
 */
import type { ErrorCode, FailureCategory } from '../protocol/errors.js';
import { evaluateGate, type Gate, type GateValue, parseGate, type Signals } from '../protocol/gates/index.js';
import type { TrialSpec } from '../protocol/messages.js';
import { err, ok, type Result } from '../protocol/result.js';
import type { AcceptanceResult } from './runtime-contract.js';

export type GateName = 'health' | 'telemetry' | 'behavior';
const GATE_NAMES: readonly GateName[] = ['health', 'telemetry', 'behavior'];

const GATE_FAILURE: Record<GateName, { category: FailureCategory; code: ErrorCode }> = {
  health: { category: 'health_gate', code: 'FG_HEALTH_GATE_FAILED' },
  telemetry: { category: 'telemetry_gate', code: 'FG_TELEMETRY_GATE_FAILED' },
  behavior: { category: 'behavior_gate', code: 'FG_BEHAVIOR_GATE_FAILED' },
};

/** protocol/messages.ts Failure.detail is bounded; keep room for a prefix added by the caller. */
const MAX_DETAIL = 1900;

export interface TrialPass {
  result: 'pass';
  at: number;
  /** Every value the gates read at the final evaluation. */
  evidence: Record<string, GateValue>;
}

export interface TrialFail {
  result: 'fail';
  category: FailureCategory;
  code: ErrorCode;
  detail: string;
  at: number;
  /** The gate that failed, for gate and timeout failures. */
  gate?: GateName;
  /** The values seen when the trial failed. */
  evidence: Record<string, GateValue>;
  /** Signals that had no value (inconclusive gates). */
  missing?: string[];
}

export type TrialDecision = TrialPass | TrialFail;

export interface TrialMonitorOptions {
  /** Clock ms when the trial began. */
  startedAt: number;
  /** Agent starts during the trial, including the current one; 0 when the trial began in this process. */
  agentStarts?: number;
  /** Whether the snapshot's manifest has an acceptance suite (its result then gates the trial). */
  acceptance: boolean;
  /** Extra values for the gates under `baseline.` (e.g. the previous snapshot's KPIs). */
  baseline?: Record<string, unknown>;
  /**
   * Earliest time the trial may be concluded. A trial resumed after an agent restart whose window
   * already elapsed must still watch the new runtime for a moment: concluding at once would find
   * no data and call it inconclusive.
   */
  notBefore?: number;
}

function clip(s: string): string {
  return s.length > MAX_DETAIL ? `${s.slice(0, MAX_DETAIL - 1)}…` : s;
}

function formatValues(values: Record<string, GateValue>, missing: readonly string[]): string {
  const parts = Object.entries(values).map(([k, v]) => `${k}=${typeof v === 'string' ? JSON.stringify(v) : v}`);
  for (const m of missing) parts.push(`${m}=?`);
  return parts.join(' ');
}

export class TrialMonitor {
  /** End of the trial window (startedAt + window_s). */
  readonly deadline: number;
  /** When the trial is concluded: the deadline, or `notBefore` if later. */
  readonly endsAt: number;
  private decided: TrialDecision | null = null;
  private readonly restartTimes: number[] = [];
  private acceptanceResult: AcceptanceResult | null = null;

  private constructor(
    readonly spec: TrialSpec,
    private readonly gates: ReadonlyArray<{ name: GateName; gate: Gate }>,
    private readonly opts: TrialMonitorOptions,
  ) {
    this.deadline = opts.startedAt + spec.window_s * 1000;
    this.endsAt = Math.max(this.deadline, opts.notBefore ?? this.deadline);
    const starts = opts.agentStarts ?? 0;
    if (starts > spec.max_agent_starts) {
      this.decided = {
        result: 'fail',
        category: 'crash_loop',
        code: 'FG_AGENT_START_LOOP',
        detail: `the agent started ${starts} times during the trial (at most ${spec.max_agent_starts} allowed)`,
        at: opts.startedAt,
        evidence: { agent_starts: starts, max_agent_starts: spec.max_agent_starts },
      };
    }
  }

  /** Parses the trial's gates; a gate that does not parse is FG_GATE_SYNTAX (a broken plan, not a device fault). */
  static create(spec: TrialSpec, opts: TrialMonitorOptions): Result<TrialMonitor> {
    const gates: { name: GateName; gate: Gate }[] = [];
    for (const name of GATE_NAMES) {
      const source = spec[name];
      if (source === undefined || source.trim() === '') continue;
      const parsed = parseGate(source);
      if (!parsed.ok) return err('FG_GATE_SYNTAX', `${name} gate: ${parsed.error.message}`, parsed.error.at);
      gates.push({ name, gate: parsed.value });
    }
    return ok(new TrialMonitor(spec, gates, opts));
  }

  get decision(): TrialDecision | null {
    return this.decided;
  }

  /** True while the acceptance suite is expected and has not reported. */
  get acceptancePending(): boolean {
    return this.opts.acceptance && this.acceptanceResult === null;
  }

  /** Signals as the gates see them: the runtime's, plus acceptance_suite_passed and `baseline.`. */
  lookup(signals: Signals): Signals {
    return (name) => {
      if (name === 'acceptance_suite_passed') return this.acceptanceResult?.passed;
      const v = signals(name);
      if (v !== undefined && v !== null) return v;
      if (name.startsWith('baseline.') && this.opts.baseline) {
        let cur: unknown = this.opts.baseline;
        for (const seg of name.slice('baseline.'.length).split('.')) {
          cur =
            typeof cur === 'object' && cur !== null && Object.hasOwn(cur, seg)
              ? (cur as Record<string, unknown>)[seg]
              : undefined;
        }
        if (typeof cur === 'boolean' || typeof cur === 'number' || typeof cur === 'string') return cur;
      }
      return v;
    };
  }

  /** A runtime restart (an unexpected exit) at `at`. */
  recordRestart(at: number): TrialDecision | null {
    if (this.decided) return this.decided;
    const { restarts, within_s } = this.spec.crash_loop;
    this.restartTimes.push(at);
    const from = at - within_s * 1000;
    while (this.restartTimes.length > 0 && (this.restartTimes[0] as number) < from) this.restartTimes.shift();
    if (this.restartTimes.length >= restarts) {
      this.decided = {
        result: 'fail',
        category: 'crash_loop',
        code: 'FG_CRASH_LOOP',
        detail: `the runtime restarted ${this.restartTimes.length} times within ${within_s}s (limit ${restarts})`,
        at,
        evidence: { restarts: this.restartTimes.length, within_s },
      };
    }
    return this.decided;
  }

  recordAcceptance(r: AcceptanceResult, at: number): TrialDecision | null {
    if (this.decided) return this.decided;
    this.acceptanceResult = r;
    if (r.passed) return null;
    const why = r.error
      ? `could not start: ${r.error}`
      : r.timed_out
        ? `timed out after ${r.duration_s}s and was killed`
        : r.signal
          ? `was killed by ${r.signal}`
          : `exited with code ${r.exit_code}`;
    const tail = r.output_tail.trim();
    const evidence: Record<string, GateValue> = { acceptance_suite_passed: false, acceptance_timed_out: r.timed_out };
    if (r.exit_code !== null) evidence.acceptance_exit_code = r.exit_code;
    this.decided = {
      result: 'fail',
      category: 'behavior_gate',
      code: 'FG_ACCEPTANCE_FAILED',
      detail: clip(`the acceptance suite ${why}${tail ? `; output tail:\n${tail.slice(-1500)}` : ''}`),
      at,
      evidence,
    };
    return this.decided;
  }

  /**
   * Evaluates the gates at `now`. Before `endsAt` only a failure decides; from then on
   * (and once no acceptance suite is pending) the trial is decided either way.
   */
  evaluate(signals: Signals, now: number): TrialDecision | null {
    if (this.decided) return this.decided;
    const read = this.lookup(signals);
    const evals = this.gates.map(({ name, gate }) => ({ name, gate, e: evaluateGate(gate, read) }));
    for (const { name, gate, e } of evals) {
      if (e.verdict !== 'fail') continue;
      const why = e.error ? e.error.message : `was false with ${formatValues(e.values, e.missing)}`;
      this.decided = {
        result: 'fail',
        ...GATE_FAILURE[name],
        detail: clip(`${name} gate "${gate.source}" ${why}`),
        at: now,
        gate: name,
        evidence: { ...e.values },
        ...(e.missing.length > 0 ? { missing: [...e.missing] } : {}),
      };
      return this.decided;
    }
    if (now < this.endsAt || this.acceptancePending) return null;
    return this.conclude(evals, now);
  }

  /**
   * Decides at `now` whatever is pending: the supervisor's last resort when an acceptance suite
   * never reported. Pending acceptance counts as inconclusive.
   */
  finish(signals: Signals, now: number): TrialDecision {
    const d = this.evaluate(signals, Math.max(now, this.endsAt));
    if (d) return d;
    const read = this.lookup(signals);
    return this.conclude(
      this.gates.map(({ name, gate }) => ({ name, gate, e: evaluateGate(gate, read) })),
      now,
    );
  }

  private conclude(
    evals: ReadonlyArray<{ name: GateName; gate: Gate; e: ReturnType<typeof evaluateGate> }>,
    now: number,
  ): TrialDecision {
    const evidence: Record<string, GateValue> = {};
    for (const { e } of evals) Object.assign(evidence, e.values);
    const open = evals.filter(({ e }) => e.verdict !== 'pass');
    if (this.acceptancePending) {
      this.decided = {
        result: 'fail',
        category: 'timeout',
        code: 'FG_TRIAL_INCONCLUSIVE',
        detail: 'the acceptance suite did not report before the trial had to be decided',
        at: now,
        evidence,
        missing: ['acceptance_suite_passed'],
      };
      return this.decided;
    }
    const first = open[0];
    if (first) {
      const missing = [...new Set(open.flatMap(({ e }) => e.missing))];
      this.decided = {
        result: 'fail',
        category: 'timeout',
        code: 'FG_TRIAL_INCONCLUSIVE',
        detail: clip(
          `${open.map(({ name }) => name).join(', ')} gate${open.length > 1 ? 's' : ''} still inconclusive at the end of the ${this.spec.window_s}s window; no value for ${missing.join(', ') || '(none)'}`,
        ),
        at: now,
        gate: first.name,
        evidence,
        missing,
      };
      return this.decided;
    }
    if (this.acceptanceResult) evidence.acceptance_suite_passed = this.acceptanceResult.passed;
    this.decided = { result: 'pass', at: now, evidence };
    return this.decided;
  }
}

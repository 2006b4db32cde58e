/**
 * A simulated runtime: the `Runtime` of agent/runtime-contract.ts without a child process. It
 * synthesises the runtime's health and telemetry lines from a fault profile (sim-process.ts) and
 * feeds them to the agent's own SignalTracker and TrialMonitor, so a simulated trial is judged by
 * the same code as a real one, and emits the same events (health, telemetry, exit, crash_loop,
 * acceptance, trial) in the supervisor's order.
 *
 * Time is simulated by catching up: on every read (signals(), trialDecision()) and on the shared
 * scheduler's tick, the runtime replays what happened since the last catch-up (samples each
 * interval, exits, restarts with the supervisor's backoff, gate evaluations, the acceptance suite)
 * at the times it happened. A healthy idle device costs nothing between reads; only devices with
 * timed work (a trial, a crash loop) stay on the scheduler. Events are emitted after a catch-up
 * completes, never from inside it: a listener may stop or restart the runtime.
 */
import type { Logger } from 'pino';
import type {
  AcceptanceResult,
  Runtime,
  RuntimeEventName,
  RuntimeEvents,
  RuntimeSignals,
  RuntimeSnapshot,
  RuntimeStarted,
  RuntimeState,
  RuntimeTrial,
} from '../agent/runtime-contract.js';
import { SignalTracker } from '../agent/supervisor-signals.js';
import { type TrialDecision, TrialMonitor } from '../agent/trial-monitor.js';
import { signalsFromObject } from '../protocol/gates/index.js';
import { ok, type Result } from '../protocol/result.js';
import type { Baseline, Faults } from './profile-schema.js';
import type { SimScheduler, Tickable } from './scheduler.js';
import { healthLine, inTelemetryGap, type ProcessState, telemetryLine } from './sim-process.js';

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  factor: number;
  stableMs: number;
}

/** Settings shared by every simulated runtime of a fleet (one object, not one per device). */
export interface SimRuntimeSettings {
  readonly scheduler: SimScheduler;
  readonly baseline: Baseline;
  /** Age after which a health line no longer counts (the supervisor's rule). Default max(3 intervals, 1 s). */
  readonly staleMs?: number;
  /** How often a trial's gates are evaluated. Default 1 s (as the supervisor). */
  readonly evalIntervalMs?: number;
  /** Restart backoff; default the supervisor's (500 ms doubling to 30 s, reset after 10 s). */
  readonly backoff?: Partial<BackoffPolicy>;
  /** Crash-loop rule outside trials (raises `crash_loop` only). Default 5 within 60 s. */
  readonly crashLoop?: { restarts: number; within_s: number };
  /** The supervisor's stop grace, part of its trial backstop. Default 5 s. */
  readonly stopGraceMs?: number;
}

export interface SimRuntimeOptions {
  readonly settings: SimRuntimeSettings;
  /** The faults this device has while it runs `snapshot` (asked at every start). */
  readonly faults: (snapshot: RuntimeSnapshot) => Faults;
  /** Seed of the device's random stream (KPI noise). */
  readonly seed: number;
  readonly logger: Logger;
}

const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 30_000, factor: 2, stableMs: 10_000 };
const NONE = Number.POSITIVE_INFINITY;

interface Session extends ProcessState {
  readonly snapshot: string;
  readonly faults: Faults;
  readonly tracker: SignalTracker;
  readonly monitor: TrialMonitor | null;
  readonly acceptance: RuntimeSnapshot['acceptance'];
  state: RuntimeState;
  runStartedAt: number;
  restarts: number;
  backoffMs: number;
  loopTimes: number[];
  /** Due times of what happens next; NONE when nothing is due. */
  nextSampleAt: number;
  exitAt: number;
  restartAt: number;
  evalAt: number;
  acceptanceStartAt: number;
  acceptanceAt: number;
  backstopAt: number;
  deadlineChecked: boolean;
  reported: boolean;
  lastHealthKey: string;
}

type Queued = { [K in RuntimeEventName]: [K, RuntimeEvents[K]] }[RuntimeEventName];

export class SimRuntime implements Runtime, Tickable {
  private session: Session | null = null;
  private listeners: Array<[RuntimeEventName, (e: never) => void]> = [];
  private queue: Queued[] = [];
  private readonly settings: SimRuntimeSettings;
  private readonly intervalMs: number;
  private readonly staleMs: number;
  private readonly windowMs: number;
  private rng: number;

  constructor(private readonly opts: SimRuntimeOptions) {
    this.settings = opts.settings;
    this.intervalMs = opts.settings.baseline.sample_interval_ms;
    this.staleMs = opts.settings.staleMs ?? Math.max(3 * this.intervalMs, 1000);
    this.windowMs = opts.settings.baseline.window_s * 1000;
    this.rng = opts.seed | 0;
  }

  private get now(): number {
    return this.settings.scheduler.now();
  }

  on<K extends RuntimeEventName>(event: K, listener: (e: RuntimeEvents[K]) => void): () => void {
    const entry: [RuntimeEventName, (e: never) => void] = [event, listener as (e: never) => void];
    this.listeners.push(entry);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== entry);
    };
  }

  /** The snapshot running now, or null. */
  get running(): string | null {
    return this.session?.snapshot ?? null;
  }

  /** The faults of the running snapshot (for the simulator's summary and tests). */
  get faults(): Faults | null {
    return this.session?.faults ?? null;
  }

  async start(snapshot: RuntimeSnapshot, trial?: RuntimeTrial): Promise<Result<RuntimeStarted>> {
    if (this.session) this.stopSession();
    const now = this.now;
    let monitor: TrialMonitor | null = null;
    if (trial) {
      const m = TrialMonitor.create(trial.spec, {
        startedAt: trial.startedAt ?? now,
        agentStarts: trial.agentStarts ?? 0,
        acceptance: snapshot.acceptance !== null,
        ...(trial.baseline ? { baseline: trial.baseline } : {}),
      });
      if (!m.ok) return m;
      monitor = m.value;
    }
    const faults = this.opts.faults(snapshot);
    const s: Session = {
      snapshot: snapshot.id,
      faults,
      tracker: new SignalTracker(
        { sampleIntervalMs: this.intervalMs, staleMs: this.staleMs, windowMs: this.windowMs },
        now,
      ),
      monitor,
      acceptance: snapshot.acceptance,
      state: 'running',
      runStartedAt: now,
      restarts: 0,
      backoffMs: this.backoff.initialMs,
      loopTimes: [],
      nextSampleAt: now,
      exitAt: faults.crash_loop ? now + faults.crash_loop.after_s * 1000 : NONE,
      restartAt: NONE,
      evalAt: NONE,
      acceptanceStartAt: NONE,
      acceptanceAt: NONE,
      backstopAt: NONE,
      deadlineChecked: false,
      reported: false,
      lastHealthKey: '',
      rng: this.rng,
      seq: 0,
      dropAcc: 0,
      errAcc: 0,
    };
    s.tracker.processStarted(now);
    this.session = s;
    if (monitor) {
      if (monitor.decision) this.report(s, monitor.decision);
      else {
        s.evalAt = now + (this.settings.evalIntervalMs ?? 1000);
        // The suite starts at the first healthy report, or after the stale window without one.
        if (s.acceptance) s.acceptanceStartAt = now + this.staleMs;
        const untilEnd = Math.max(0, monitor.deadline - now);
        s.backstopAt =
          now +
          untilEnd +
          (s.acceptance ? s.acceptance.timeout_s * 1000 + this.staleMs : 0) +
          (this.settings.stopGraceMs ?? 5000) +
          1000;
      }
    }
    this.opts.logger.info({ snapshot: snapshot.id, trial: monitor !== null, faults }, 'simulated runtime started');
    // The first sample comes with the next catch-up, as a real process writes its first line a moment after spawn.
    this.schedule(s);
    this.flush();
    return ok({ dir: `sim:${snapshot.id}`, extracted: false, pid: 0 });
  }

  stop(): Promise<void> {
    if (this.session) this.stopSession();
    return Promise.resolve();
  }

  private stopSession(): void {
    const s = this.session;
    if (!s) return;
    this.rng = s.rng;
    s.state = 'stopped';
    this.session = null;
    this.settings.scheduler.delete(this);
    // What the stopped process still had to say belongs to no run (the supervisor drops it too).
    this.queue = [];
  }

  signals(): RuntimeSignals {
    const now = this.now;
    const s = this.session;
    if (!s) {
      const idle = new SignalTracker({ sampleIntervalMs: this.intervalMs, staleMs: this.staleMs, windowMs: 1 }, now);
      return { health: idle.healthAt(now, 'stopped', 0, null), telemetry: idle.telemetryAt(now, null) };
    }
    this.advance(now);
    return {
      health: s.tracker.healthAt(now, s.state, s.restarts, s.snapshot),
      telemetry: s.tracker.telemetryAt(now, s.snapshot),
    };
  }

  trialDecision(): TrialDecision | null {
    const s = this.session;
    if (!s) return null;
    this.advance(this.now);
    return s.monitor?.decision ?? null;
  }

  tick(now: number): void {
    this.advance(now);
  }

  private get backoff(): BackoffPolicy {
    return { ...DEFAULT_BACKOFF, ...this.settings.backoff };
  }

  /** Replays everything due up to `now`, in time order, then emits the queued events. */
  private advance(now: number): void {
    const s = this.session;
    if (s) {
      this.skipIdleSamples(s, now);
      for (;;) {
        const monitorOpen = s.monitor !== null && !s.monitor.decision;
        const deadline = monitorOpen && !s.deadlineChecked ? (s.monitor as TrialMonitor).deadline : NONE;
        const sample = s.state === 'running' ? s.nextSampleAt : NONE;
        const t = Math.min(
          s.exitAt,
          s.restartAt,
          sample,
          s.acceptanceStartAt,
          s.acceptanceAt,
          monitorOpen ? s.evalAt : NONE,
          deadline,
          monitorOpen ? s.backstopAt : NONE,
        );
        if (t > now || this.session !== s) break;
        // Ties: an exit comes before the sample of the same instant (a crash at start sends nothing).
        if (t === s.exitAt) this.exit(s, t);
        else if (t === s.restartAt) this.restart(s, t);
        else if (t === sample) this.sample(s, t);
        else if (t === s.acceptanceStartAt) this.startAcceptance(s, t);
        else if (t === s.acceptanceAt) this.finishAcceptance(s, t);
        else if (t === s.evalAt) {
          s.evalAt = t + (this.settings.evalIntervalMs ?? 1000);
          this.evaluate(s, t);
        } else if (t === deadline) {
          s.deadlineChecked = true;
          this.evaluate(s, t);
        } else if (t === s.backstopAt) {
          s.backstopAt = NONE;
          if (s.monitor && !s.monitor.decision) this.report(s, s.monitor.finish(this.gateSignals(s, t), t));
        }
      }
      if (this.session === s) {
        this.emitHealthIfChanged(s, now);
        this.schedule(s);
      }
    }
    this.flush();
  }

  /** A device nobody read for longer than the window only needs the samples still in the window. */
  private skipIdleSamples(s: Session, now: number): void {
    if (s.state !== 'running' || s.monitor) return;
    const keepFrom = now - this.windowMs - this.intervalMs;
    if (s.nextSampleAt >= keepFrom) return;
    const skip = Math.floor((keepFrom - s.nextSampleAt) / this.intervalMs);
    // The skipped samples were sent (the sequence continues without a hole), only not replayed.
    s.nextSampleAt += skip * this.intervalMs;
    s.seq += skip;
  }

  /** On the scheduler while something is timed: a trial, a crash loop, a pending acceptance. */
  private schedule(s: Session): void {
    const timed =
      (s.monitor !== null && !s.monitor.decision) ||
      s.exitAt !== NONE ||
      s.restartAt !== NONE ||
      s.acceptanceAt !== NONE;
    if (timed) this.settings.scheduler.add(this);
    else this.settings.scheduler.delete(this);
  }

  private sample(s: Session, t: number): void {
    s.nextSampleAt = t + this.intervalMs;
    const runningS = (t - s.runStartedAt) / 1000;
    const h = healthLine(s.faults, runningS);
    s.tracker.health(h, t);
    if (h.runtime_healthy && s.acceptanceStartAt !== NONE) this.startAcceptance(s, t);
    if (inTelemetryGap(s.faults, runningS)) return;
    const line = telemetryLine(s, this.settings.baseline, s.faults, this.intervalMs);
    if (line) s.tracker.telemetry(line, t);
    if (this.has('telemetry')) this.queue.push(['telemetry', s.tracker.telemetryAt(t, s.snapshot)]);
  }

  private exit(s: Session, t: number): void {
    const ranMs = t - s.runStartedAt;
    const code = s.faults.crash_loop?.exit_code ?? 1;
    s.exitAt = NONE;
    s.tracker.processExited(t);
    s.restarts++;
    const b = this.backoff;
    if (ranMs >= b.stableMs) s.backoffMs = b.initialMs;
    const delay = s.backoffMs;
    s.backoffMs = Math.min(b.maxMs, Math.max(1, s.backoffMs * b.factor));
    s.state = 'backoff';
    s.restartAt = t + delay;
    this.queue.push([
      'exit',
      {
        snapshot: s.snapshot,
        code,
        signal: null,
        ran_s: Math.round(ranMs) / 1000,
        restarts: s.restarts,
        restart_in_ms: delay,
        stderr_tail: `simulated crash (exit ${code})\n`,
      },
    ]);
    if (s.monitor && !s.monitor.decision) {
      const d = s.monitor.recordRestart(t);
      if (d) {
        const within = s.monitor.spec.crash_loop.within_s;
        this.queue.push(['crash_loop', { snapshot: s.snapshot, restarts: s.restarts, within_s: within, trial: true }]);
        this.report(s, d);
      }
      return;
    }
    const rule = this.settings.crashLoop ?? { restarts: 5, within_s: 60 };
    s.loopTimes.push(t);
    s.loopTimes = s.loopTimes.filter((x) => x >= t - rule.within_s * 1000);
    if (s.loopTimes.length >= rule.restarts) {
      this.queue.push([
        'crash_loop',
        { snapshot: s.snapshot, restarts: s.loopTimes.length, within_s: rule.within_s, trial: false },
      ]);
      s.loopTimes = [];
    }
  }

  private restart(s: Session, t: number): void {
    s.restartAt = NONE;
    s.state = 'running';
    s.runStartedAt = t;
    s.tracker.processStarted(t);
    s.nextSampleAt = t;
    s.seq = 0; // a new process has its own sequence
    if (s.faults.crash_loop) s.exitAt = t + s.faults.crash_loop.after_s * 1000;
  }

  private startAcceptance(s: Session, t: number): void {
    s.acceptanceStartAt = NONE;
    const suite = s.acceptance;
    if (!suite || !s.monitor || s.monitor.decision || s.acceptanceAt !== NONE) return;
    const runMs = Math.min(this.settings.baseline.acceptance_s, suite.timeout_s) * 1000;
    s.acceptanceAt = t + runMs;
  }

  private finishAcceptance(s: Session, t: number): void {
    s.acceptanceAt = NONE;
    const suite = s.acceptance;
    if (!suite || !s.monitor || s.monitor.decision) return;
    const timedOut = this.settings.baseline.acceptance_s > suite.timeout_s;
    const passed = !timedOut && s.faults.acceptance_fail !== true;
    const r: AcceptanceResult = {
      passed,
      exit_code: timedOut ? null : passed ? 0 : 1,
      signal: timedOut ? 'SIGKILL' : null,
      timed_out: timedOut,
      duration_s: Math.min(this.settings.baseline.acceptance_s, suite.timeout_s),
      output_tail: passed ? 'simulated acceptance suite: ok\n' : 'simulated acceptance suite: FAILED (fault profile)\n',
    };
    this.queue.push(['acceptance', r]);
    const d = s.monitor.recordAcceptance(r, t);
    if (d) this.report(s, d);
    else this.evaluate(s, t);
  }

  private evaluate(s: Session, t: number): void {
    if (!s.monitor || s.monitor.decision) return;
    const d = s.monitor.evaluate(this.gateSignals(s, t), t);
    if (d) this.report(s, d);
  }

  /** The signals as gates read them at `t` (the supervisor's TrialHost.signals). */
  private gateSignals(s: Session, t: number) {
    return signalsFromObject(
      s.tracker.healthAt(t, s.state, s.restarts, s.snapshot),
      s.tracker.telemetryAt(t, s.snapshot),
    );
  }

  private report(s: Session, d: TrialDecision): void {
    if (s.reported) return;
    s.reported = true;
    s.evalAt = NONE;
    s.acceptanceAt = NONE;
    s.acceptanceStartAt = NONE;
    s.backstopAt = NONE;
    const log = this.opts.logger;
    if (d.result === 'pass') log.info({ snapshot: s.snapshot, evidence: d.evidence }, 'trial passed');
    else log.warn({ snapshot: s.snapshot, code: d.code, category: d.category, detail: d.detail }, 'trial failed');
    this.queue.push(['trial', d]);
  }

  private emitHealthIfChanged(s: Session, now: number): void {
    if (!this.has('health')) return;
    const h = s.tracker.healthAt(now, s.state, s.restarts, s.snapshot);
    const key = `${h.state}|${h.runtime_healthy}|${h.adapter_connected}|${h.restarts}|${h.detail ?? ''}`;
    if (key === s.lastHealthKey) return;
    s.lastHealthKey = key;
    this.queue.push(['health', h]);
  }

  private has(event: RuntimeEventName): boolean {
    return this.listeners.some(([e]) => e === event);
  }

  private flush(): void {
    while (this.queue.length > 0) {
      const [event, payload] = this.queue.shift() as Queued;
      for (const [e, l] of this.listeners) {
        if (e !== event) continue;
        try {
          (l as (p: typeof payload) => void)(payload);
        } catch (err) {
          this.opts.logger.error({ err, event }, 'runtime event listener threw');
        }
      }
    }
  }
}

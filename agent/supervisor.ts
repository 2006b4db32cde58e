/**
 * The runtime supervisor: the real `Runtime` of agent/runtime-contract.ts.
 *
 * start() extracts the snapshot (agent/extract.ts), runs the manifest's run spec as the leader of
 * its own process group with cwd = the snapshot directory, reads its stdout line protocol, and
 * restarts it on exit with exponential backoff (bounded, reset after a stable run). Under a trial
 * it runs the acceptance suite and feeds the TrialMonitor, which decides the trial. stop() ends
 * the whole group (SIGTERM, then SIGKILL after a grace period); nothing is left running.
 * docs/runtime-contract.md is the reference for every rule here.
 */
import type { ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { signalsFromObject } from '../protocol/gates/index.js';
import { err, FleetgateError, ok, type Result } from '../protocol/result.js';
import { type Extracted, extractSnapshot } from './extract.js';
import {
  LineSplitter,
  parseRuntimeLine,
  type Runtime,
  type RuntimeEventName,
  type RuntimeEvents,
  type RuntimeSignals,
  type RuntimeSnapshot,
  type RuntimeStarted,
  type RuntimeState,
  type RuntimeTrial,
  TextTail,
} from './runtime-contract.js';
import { childEnv, killGroup, reapGroup, spawnGroup, supervisorToken, TOKEN_ENV } from './supervisor-process.js';
import { SignalTracker } from './supervisor-signals.js';
import { type TrialHost, TrialRun } from './supervisor-trial.js';
import { type TrialDecision, TrialMonitor } from './trial-monitor.js';

export interface BackoffPolicy {
  /** First restart delay. */
  initialMs: number;
  /** Upper bound of the delay. */
  maxMs: number;
  factor: number;
  /** A run at least this long resets the delay to `initialMs`. */
  stableMs: number;
}

export interface SupervisorOptions {
  dataDir: string;
  logger: Logger;
  /** Expected telemetry sample interval of the runtime (timing-based drops). Default 1000. */
  sampleIntervalMs?: number;
  /** Age after which a health line no longer counts. Default 3 sample intervals, at least 1 s. */
  staleMs?: number;
  /** Sliding window of the telemetry signals. Default 60 s. */
  windowMs?: number;
  backoff?: Partial<BackoffPolicy>;
  /** SIGTERM-to-SIGKILL grace on stop. Default 5 s. */
  stopGraceMs?: number;
  /** Crash-loop rule outside trials (only raises the `crash_loop` event). Default 5 within 60 s. */
  crashLoop?: { restarts: number; within_s: number };
  /** How often a trial's gates are evaluated. Default 1 s. */
  evalIntervalMs?: number;
  /** Pass the agent's whole environment to the runtime (default: PATH, HOME, LANG, TZ... only). */
  inheritEnv?: boolean;
  now?: () => number;
}

const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 30_000, factor: 2, stableMs: 10_000 };
const STDERR_TAIL_CHARS = 2048;

interface Session {
  readonly snapshot: RuntimeSnapshot;
  readonly dir: string;
  readonly env: Record<string, string>;
  readonly tracker: SignalTracker;
  trial: TrialRun | null;
  readonly stderrTail: TextTail;
  state: RuntimeState;
  child: ChildProcess | null;
  runStartedAt: number;
  restarts: number;
  backoffMs: number;
  /** Restart times for the crash-loop rule outside trials. */
  loopTimes: number[];
  restartTimer: NodeJS.Timeout | null;
  /** Re-checks health so that staleness (a silent runtime) is reported without a new line. */
  healthTimer: NodeJS.Timeout | null;
  lastHealthKey: string;
}

type Listeners = { [K in RuntimeEventName]: Set<(e: RuntimeEvents[K]) => void> };

export class Supervisor implements Runtime {
  private session: Session | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly listeners: Listeners = {
    health: new Set(),
    telemetry: new Set(),
    exit: new Set(),
    crash_loop: new Set(),
    acceptance: new Set(),
    trial: new Set(),
  };
  private readonly now: () => number;
  private readonly backoff: BackoffPolicy;
  private readonly sampleIntervalMs: number;
  private readonly staleMs: number;
  private readonly windowMs: number;
  private token: string | null = null;

  constructor(private readonly opts: SupervisorOptions) {
    this.now = opts.now ?? Date.now;
    this.backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
    this.sampleIntervalMs = opts.sampleIntervalMs ?? 1000;
    this.staleMs = opts.staleMs ?? Math.max(3 * this.sampleIntervalMs, 1000);
    this.windowMs = opts.windowMs ?? 60_000;
  }

  on<K extends RuntimeEventName>(event: K, listener: (e: RuntimeEvents[K]) => void): () => void {
    const set = this.listeners[event] as Set<(e: RuntimeEvents[K]) => void>;
    set.add(listener);
    return () => set.delete(listener);
  }

  private emit<K extends RuntimeEventName>(event: K, payload: RuntimeEvents[K]): void {
    for (const l of this.listeners[event] as Set<(e: RuntimeEvents[K]) => void>) {
      try {
        l(payload);
      } catch (e) {
        this.opts.logger.error({ err: e, event }, 'runtime event listener threw');
      }
    }
  }

  /** The pid of the running runtime process (its process group id), or null. */
  get pid(): number | null {
    return this.session?.child?.pid ?? null;
  }

  start(snapshot: RuntimeSnapshot, trial?: RuntimeTrial): Promise<Result<RuntimeStarted>> {
    return this.serialize(async () => {
      if (this.session) await this.stopSession(this.session);
      return this.startSession(snapshot, trial);
    });
  }

  stop(): Promise<void> {
    return this.serialize(async () => {
      if (this.session) await this.stopSession(this.session);
    });
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  signals(): RuntimeSignals {
    const s = this.session;
    const now = this.now();
    if (!s) {
      const idle = new SignalTracker(this.signalOptions(), now);
      return { health: idle.healthAt(now, 'stopped', 0, null), telemetry: idle.telemetryAt(now, null) };
    }
    return {
      health: s.tracker.healthAt(now, s.state, s.restarts, s.snapshot.id),
      telemetry: s.tracker.telemetryAt(now, s.snapshot.id),
    };
  }

  trialDecision(): TrialDecision | null {
    return this.session?.trial?.decision ?? null;
  }

  private signalOptions() {
    return { sampleIntervalMs: this.sampleIntervalMs, staleMs: this.staleMs, windowMs: this.windowMs };
  }

  private async startSession(snapshot: RuntimeSnapshot, trial?: RuntimeTrial): Promise<Result<RuntimeStarted>> {
    const log = this.opts.logger;
    const now = this.now();
    let monitor: TrialMonitor | null = null;
    if (trial) {
      const m = TrialMonitor.create(trial.spec, {
        startedAt: trial.startedAt ?? now,
        agentStarts: trial.agentStarts ?? 0,
        acceptance: snapshot.acceptance !== null,
        // Two stale windows: long enough for a fresh runtime's first reports to count.
        notBefore: now + 2 * this.staleMs,
        ...(trial.baseline ? { baseline: trial.baseline } : {}),
      });
      if (!m.ok) return m;
      monitor = m.value;
    }
    let token: string;
    try {
      // Once per supervisor: the first call also reaps what an earlier agent run left running.
      this.token ??= supervisorToken(this.opts.dataDir, this.opts.logger);
      token = this.token;
    } catch (e) {
      return err('FG_EXTRACT_FAILED', `data dir: ${(e as Error).message}`);
    }
    let extracted: Result<Extracted>;
    try {
      extracted = await extractSnapshot(this.opts.dataDir, snapshot.id, () => snapshot.files);
    } catch (e) {
      // The files are decoded from the slot when first read (RuntimeSnapshot.files).
      if (e instanceof FleetgateError) return err(e.code, e.message);
      throw e;
    }
    if (!extracted.ok) return extracted;
    const { dir } = extracted.value;
    const env = childEnv(
      snapshot.run.env,
      {
        FLEETGATE_SNAPSHOT_ID: snapshot.id,
        FLEETGATE_SNAPSHOT_DIR: dir,
        FLEETGATE_SAMPLE_INTERVAL_MS: String(this.sampleIntervalMs),
        [TOKEN_ENV]: token,
      },
      this.opts.inheritEnv ?? false,
    );
    const s: Session = {
      snapshot,
      dir,
      env,
      tracker: new SignalTracker(this.signalOptions(), now),
      trial: null,
      stderrTail: new TextTail(STDERR_TAIL_CHARS),
      state: 'starting',
      child: null,
      runStartedAt: now,
      restarts: 0,
      backoffMs: this.backoff.initialMs,
      loopTimes: [],
      restartTimer: null,
      healthTimer: null,
      lastHealthKey: '',
    };
    if (monitor)
      s.trial = new TrialRun(monitor, snapshot.acceptance, { snapshot: snapshot.id, dir, env }, this.trialHost(s));
    this.session = s;
    const spawned = await this.spawnRun(s, true);
    if (!spawned.ok) {
      await this.stopSession(s);
      return err('FG_RUNTIME_START_FAILED', `${snapshot.run.command}: ${spawned.error}`);
    }
    log.info({ snapshot: snapshot.id, pid: spawned.value, dir, trial: monitor !== null }, 'runtime started');
    s.healthTimer = setInterval(() => this.emitHealth(s), Math.max(50, Math.min(1000, this.staleMs / 2)));
    s.trial?.start();
    return ok({ dir, extracted: extracted.value.extracted, pid: spawned.value });
  }

  /** Spawns the run command; resolves with the pid, or the spawn error for a command that can not start. */
  private spawnRun(s: Session, first = false): Promise<{ ok: true; value: number } | { ok: false; error: string }> {
    const { run } = s.snapshot;
    const log = this.opts.logger;
    let child: ChildProcess;
    try {
      child = spawnGroup(run.command, run.args, s.dir, s.env);
    } catch (e) {
      return Promise.resolve({ ok: false, error: (e as Error).message });
    }
    s.child = child;
    s.state = 'starting';
    const out = new LineSplitter();
    const errLines = new LineSplitter();
    child.stdout?.on('data', (b: Buffer) => {
      for (const line of out.push(b)) this.onLine(s, child, line);
      this.countOversize(s, out, errLines);
    });
    child.stderr?.on('data', (b: Buffer) => {
      for (const line of errLines.push(b)) {
        s.stderrTail.push(`${line}\n`);
        log.warn({ snapshot: s.snapshot.id, stream: 'stderr' }, line);
      }
      this.countOversize(s, out, errLines);
    });
    return new Promise((resolveSpawn) => {
      child.once('spawn', () => {
        if (s.state === 'stopping' || s.state === 'stopped') {
          resolveSpawn({ ok: true, value: child.pid as number });
          return;
        }
        s.runStartedAt = this.now();
        s.tracker.processStarted(s.runStartedAt);
        s.state = 'running';
        this.emitHealth(s);
        resolveSpawn({ ok: true, value: child.pid as number });
      });
      child.once('error', (e) => {
        // Spawn failures (ENOENT, EACCES) come as 'error' without a pid; other errors also end in 'exit'.
        if (child.pid !== undefined) return;
        resolveSpawn({ ok: false, error: e.message });
        // On the first start, start() reports it; on a restart it is one more exit.
        if (first) s.child = null;
        else this.onExit(s, child, null, null, e.message);
      });
      child.once('exit', (code, signal) => this.onExit(s, child, code, signal));
    });
  }

  private countOversize(s: Session, a: LineSplitter, b: LineSplitter): void {
    s.tracker.oversizeLines = a.dropped + b.dropped;
  }

  private onLine(s: Session, child: ChildProcess, text: string): void {
    const log = this.opts.logger;
    const line = parseRuntimeLine(text);
    if (line.type === 'log') {
      log.info({ snapshot: s.snapshot.id, stream: 'stdout' }, line.text);
      return;
    }
    if (line.type === 'invalid') {
      log.warn({ snapshot: s.snapshot.id, reason: line.reason }, 'runtime line ignored');
      return;
    }
    // Lines of a process that already exited belong to no run.
    if (s.child !== child || this.session !== s) return;
    const now = this.now();
    if (line.type === 'health') {
      s.tracker.health(line, now);
      this.emitHealth(s);
      if (line.runtime_healthy) s.trial?.onHealthy();
      s.trial?.evaluate();
    } else {
      s.tracker.telemetry(line, now);
      this.emit('telemetry', s.tracker.telemetryAt(now, s.snapshot.id));
    }
  }

  /** Emits `health` when a field other than uptime changed (on lines, state changes and a periodic check). */
  private emitHealth(s: Session): void {
    const h = s.tracker.healthAt(this.now(), s.state, s.restarts, s.snapshot.id);
    const key = `${h.state}|${h.runtime_healthy}|${h.adapter_connected}|${h.restarts}|${h.detail ?? ''}`;
    if (key === s.lastHealthKey) return;
    s.lastHealthKey = key;
    this.emit('health', h);
  }

  private onExit(s: Session, child: ChildProcess, code: number | null, signal: string | null, error?: string): void {
    if (s.child !== child) return;
    s.child = null;
    const now = this.now();
    const ranMs = child.pid === undefined ? 0 : now - s.runStartedAt;
    s.tracker.processExited(now);
    // While stopping, killGroup() gives the helpers their grace period.
    if (s.state === 'stopping' || s.state === 'stopped' || this.session !== s) return;
    // The leader died on its own: helpers it leaves behind would hold the adapter the next run needs.
    if (child.pid !== undefined) reapGroup(child.pid);

    s.restarts++;
    if (ranMs >= this.backoff.stableMs) s.backoffMs = this.backoff.initialMs;
    const delay = s.backoffMs;
    s.backoffMs = Math.min(this.backoff.maxMs, Math.max(1, s.backoffMs * this.backoff.factor));
    s.state = 'backoff';
    this.opts.logger.warn(
      { snapshot: s.snapshot.id, code, signal, error, ran_s: ranMs / 1000, restarts: s.restarts, restart_in_ms: delay },
      'runtime exited; restarting',
    );
    this.emit('exit', {
      snapshot: s.snapshot.id,
      code,
      signal,
      ...(error !== undefined ? { error } : {}),
      ran_s: Math.round(ranMs) / 1000,
      restarts: s.restarts,
      restart_in_ms: delay,
      stderr_tail: s.stderrTail.toString(),
    });
    this.emitHealth(s);
    s.restartTimer = setTimeout(() => {
      s.restartTimer = null;
      if (this.session !== s || s.state !== 'backoff') return;
      void this.spawnRun(s);
    }, delay);

    if (s.trial && !s.trial.decision) s.trial.restart(now, s.restarts);
    else this.checkCrashLoop(s, now);
  }

  private checkCrashLoop(s: Session, now: number): void {
    const rule = this.opts.crashLoop ?? { restarts: 5, within_s: 60 };
    s.loopTimes.push(now);
    s.loopTimes = s.loopTimes.filter((t) => t >= now - rule.within_s * 1000);
    if (s.loopTimes.length >= rule.restarts) {
      this.emit('crash_loop', {
        snapshot: s.snapshot.id,
        restarts: s.loopTimes.length,
        within_s: rule.within_s,
        trial: false,
      });
      // Raise it again only after another full series.
      s.loopTimes = [];
    }
  }

  private trialHost(s: Session): TrialHost {
    return {
      logger: this.opts.logger,
      staleMs: this.staleMs,
      evalIntervalMs: this.opts.evalIntervalMs ?? 1000,
      stopGraceMs: this.opts.stopGraceMs ?? 5000,
      now: this.now,
      signals: () => {
        const now = this.now();
        return signalsFromObject(
          s.tracker.healthAt(now, s.state, s.restarts, s.snapshot.id),
          s.tracker.telemetryAt(now, s.snapshot.id),
        );
      },
      emit: (event, payload) => {
        if (this.session === s) this.emit(event, payload);
      },
    };
  }

  // --- stop ---

  private async stopSession(s: Session): Promise<void> {
    s.state = 'stopping';
    if (s.restartTimer) clearTimeout(s.restartTimer);
    if (s.healthTimer) clearInterval(s.healthTimer);
    s.restartTimer = null;
    s.healthTimer = null;
    const grace = this.opts.stopGraceMs ?? 5000;
    const pending: Promise<void>[] = [];
    if (s.trial) pending.push(s.trial.stop());
    const child = s.child;
    if (child) pending.push(killGroup(child, grace));
    await Promise.all(pending);
    s.child = null;
    s.state = 'stopped';
    if (this.session === s) this.session = null;
    this.opts.logger.info({ snapshot: s.snapshot.id, restarts: s.restarts }, 'runtime stopped');
  }
}

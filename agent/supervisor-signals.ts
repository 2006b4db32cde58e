/**
 * Turns the runtime's health and telemetry lines into the signals of the health and telemetry
 * topics (docs/runtime-contract.md "Signals"). Pure: every method takes the time, so unit tests
 * run on fake time and the supervisor on its clock.
 */
import type { HealthLine, HealthSignals, RuntimeState, TelemetryLine, TelemetrySignals } from './runtime-contract.js';

export interface SignalOptions {
  /** The interval at which the runtime is expected to sample telemetry (timing-based drops). */
  readonly sampleIntervalMs: number;
  /** A health verdict older than this is stale: the runtime is treated as unhealthy. */
  readonly staleMs: number;
  /** Sliding window for gap, drops, rate and KPI means. */
  readonly windowMs: number;
  /** Bound on the samples kept in the window, whatever the runtime's rate. */
  readonly maxSamples?: number;
}

interface Sample {
  at: number;
  run: number;
  seq: number | undefined;
  kpi: Record<string, number>;
  protocolErrors: number;
  /** Losses attributed to this sample: reported by the runtime plus the hole before it. */
  drops: number;
}

const DEFAULT_MAX_SAMPLES = 20_000;

export class SignalTracker {
  private run = 0;
  private runningSince: number | null = null;
  /** When the process went down; null while running or before the first start. */
  private downSince: number | null;
  private lastHealth: { line: HealthLine; at: number } | null = null;
  private readonly samples: Sample[] = [];
  /** The newest sample that fell out of the window: the left edge of the first gap. */
  private beforeWindow: Sample | null = null;
  private latestKpi: Record<string, number> = {};
  oversizeLines = 0;

  /** `observedFrom`: when observation began (start()); gaps are not counted before it. */
  constructor(
    private readonly opts: SignalOptions,
    private readonly observedFrom: number,
  ) {
    this.downSince = observedFrom;
  }

  processStarted(now: number): void {
    this.run++;
    this.runningSince = now;
    this.downSince = null;
    // A health verdict belongs to the process that wrote it.
    this.lastHealth = null;
  }

  processExited(now: number): void {
    this.runningSince = null;
    this.downSince = now;
    this.lastHealth = null;
  }

  health(line: HealthLine, now: number): void {
    this.lastHealth = { line, at: now };
  }

  telemetry(line: TelemetryLine, now: number): void {
    const prev = this.samples.at(-1) ?? this.beforeWindow;
    let hole = 0;
    if (prev) {
      if (prev.run === this.run && prev.seq !== undefined && line.seq !== undefined) {
        // Sequence numbers are exact (Sparkplug-style); timing would misread a burst after a stall.
        hole = Math.max(0, line.seq - prev.seq - 1);
      } else {
        // Expected samples missing at the configured interval; a sample less than half an interval
        // late is not a loss.
        hole = Math.max(0, Math.round((now - prev.at) / this.opts.sampleIntervalMs) - 1);
      }
    }
    this.samples.push({
      at: now,
      run: this.run,
      seq: line.seq,
      kpi: line.kpi,
      protocolErrors: line.protocol_errors,
      drops: line.drops + hole,
    });
    this.latestKpi = { ...this.latestKpi, ...line.kpi };
    this.prune(now);
  }

  private prune(now: number): void {
    const from = now - this.opts.windowMs;
    const max = this.opts.maxSamples ?? DEFAULT_MAX_SAMPLES;
    let cut = 0;
    while (cut < this.samples.length && ((this.samples[cut] as Sample).at < from || this.samples.length - cut > max)) {
      cut++;
    }
    if (cut > 0) {
      this.beforeWindow = this.samples[cut - 1] as Sample;
      this.samples.splice(0, cut);
    }
  }

  healthAt(now: number, state: RuntimeState, restarts: number, snapshot: string | null): HealthSignals {
    const { staleMs } = this.opts;
    let healthy: boolean | null;
    let adapter: boolean | null;
    let detail: string | undefined;
    if (state === 'stopped' || state === 'stopping') {
      healthy = false;
      adapter = false;
    } else if (this.runningSince === null) {
      // Down between restarts: unknown for a short grace (a restart that recovers is judged by the
      // crash-loop rule), unhealthy once the runtime has been down longer than a health line may be old.
      const down = now - (this.downSince ?? this.observedFrom);
      healthy = down > staleMs ? false : null;
      adapter = healthy;
    } else if (this.lastHealth && now - this.lastHealth.at <= staleMs) {
      healthy = this.lastHealth.line.runtime_healthy;
      adapter = this.lastHealth.line.adapter_connected ?? null;
      detail = this.lastHealth.line.detail;
    } else if (this.lastHealth || now - this.runningSince > staleMs) {
      // Silent or stale: a runtime that stopped reporting is not healthy, and can vouch for nothing.
      healthy = false;
      adapter = false;
      detail = this.lastHealth ? 'health report is stale' : 'no health report since start';
    } else {
      healthy = null;
      adapter = null;
    }
    const out: HealthSignals = {
      snapshot,
      state,
      runtime_healthy: healthy,
      adapter_connected: adapter,
      restarts,
      uptime: this.runningSince === null ? 0 : round3((now - this.runningSince) / 1000),
    };
    if (detail !== undefined) out.detail = detail;
    return out;
  }

  telemetryAt(now: number, snapshot: string | null): TelemetrySignals {
    this.prune(now);
    const ref = Math.max(now - this.opts.windowMs, this.observedFrom);
    let left = this.beforeWindow ? Math.max(this.beforeWindow.at, ref) : ref;
    let gap = 0;
    let drops = 0;
    let protocolErrors = 0;
    const sums = new Map<string, { sum: number; n: number }>();
    for (const s of this.samples) {
      gap = Math.max(gap, s.at - left);
      left = s.at;
      drops += s.drops;
      protocolErrors += s.protocolErrors;
      // for-in, not Object.entries: no pair arrays per sample per read (the window is read at every
      // health/telemetry publish and gate evaluation; 10,000 simulated devices read it too).
      for (const k in s.kpi) {
        if (!Object.hasOwn(s.kpi, k)) continue;
        const v = s.kpi[k] as number;
        const e = sums.get(k);
        if (e) {
          e.sum += v;
          e.n++;
        } else sums.set(k, { sum: v, n: 1 });
      }
    }
    // The open gap counts: a runtime that went silent shows it now, not at its next sample.
    gap = Math.max(gap, now - left);
    const kpi: Record<string, number> = {};
    for (const [k, { sum, n }] of sums) {
      // 12 significant digits: a steady 1.2 must read 1.2, not 1.1999999999999997, in a gate.
      const value = Number((sum / n).toPrecision(12));
      Object.defineProperty(kpi, k, { value, enumerable: true, writable: true, configurable: true });
    }
    const windowMs = Math.max(now - ref, 1);
    return {
      snapshot,
      gap: round3(gap / 1000),
      drops,
      rate: round3(this.samples.length / (windowMs / 1000)),
      kpi,
      kpi_latest: { ...this.latestKpi },
      protocol_errors: protocolErrors,
      window: round3(windowMs / 1000),
      samples: this.samples.length,
      oversize_lines: this.oversizeLines,
    };
  }
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

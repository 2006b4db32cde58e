/**
 * What a simulated runtime process says: the health and telemetry lines of the runtime contract
 * (docs/runtime-contract.md), synthesised from the baseline and the faults. Pure apart from the
 * device's own random stream, which makes a run repeatable.
 */
import type { HealthLine, TelemetryLine } from '../agent/runtime-contract.js';
import type { Baseline, Faults } from './profile-schema.js';

/** mulberry32: a tiny, fast, seedable PRNG (one 32-bit word of state per device). */
export function nextRandom(state: { rng: number }): number {
  state.rng = (state.rng + 0x6d2b79f5) | 0;
  let t = state.rng;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** Per-process counters of the synthetic runtime. */
export interface ProcessState {
  rng: number;
  /** Telemetry sequence number of the process (+1 per sample sent or lost). */
  seq: number;
  /** Fractional drops and protocol errors carried to the next sample. */
  dropAcc: number;
  errAcc: number;
}

export function healthLine(faults: Faults, runningS: number): HealthLine {
  const healthy = !(faults.unhealthy && runningS >= faults.unhealthy.after_s);
  const adapter = !(faults.adapter_disconnect && runningS >= faults.adapter_disconnect.after_s);
  const line: HealthLine = { type: 'health', runtime_healthy: healthy, adapter_connected: adapter };
  if (!adapter) line.detail = 'adapter lost (simulated)';
  else if (!healthy) line.detail = 'unhealthy (simulated)';
  return line;
}

/** In a telemetry gap the runtime samples nothing (and its sequence does not move). */
export function inTelemetryGap(faults: Faults, runningS: number): boolean {
  const g = faults.telemetry_gap;
  if (!g || runningS < g.after_s) return false;
  return g.duration_s === undefined || runningS < g.after_s + g.duration_s;
}

function shiftFactor(faults: Faults, kpi: string): number {
  const s = faults.kpi_shift_pct;
  if (s === undefined) return 1;
  if (typeof s === 'number') return 1 + s / 100;
  const v = s[kpi];
  return v === undefined ? 1 : 1 + v / 100;
}

/**
 * The telemetry sample of one interval, or null when it is lost (a `drops` fault): the sequence
 * number still advances, so the agent sees the hole exactly as it would from a real runtime.
 */
export function telemetryLine(
  p: ProcessState,
  baseline: Baseline,
  faults: Faults,
  intervalMs: number,
): TelemetryLine | null {
  if (faults.drops) {
    p.dropAcc += (faults.drops * intervalMs) / 60_000;
    if (p.dropAcc >= 1) {
      p.dropAcc -= 1;
      p.seq++;
      return null;
    }
  }
  p.errAcc += Math.min(100, baseline.protocol_errors_pct + (faults.protocol_errors_pct ?? 0)) / 100;
  const errors = Math.floor(p.errAcc + 1e-9);
  p.errAcc -= errors;
  const kpi: Record<string, number> = {};
  const noise = baseline.noise_pct / 100;
  for (const [name, base] of Object.entries(baseline.kpi)) {
    const jitter = noise === 0 ? 1 : 1 + noise * (2 * nextRandom(p) - 1);
    const value = Math.round(base * shiftFactor(faults, name) * jitter * 1e6) / 1e6;
    // defineProperty: a KPI named `__proto__` must land as data (as the agent's line parser does).
    Object.defineProperty(kpi, name, { value, enumerable: true, writable: true, configurable: true });
  }
  return { type: 'telemetry', kpi, protocol_errors: errors, drops: 0, seq: p.seq++ };
}

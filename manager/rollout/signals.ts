/**
 * Adapters from decoded device messages to engine events, for the manager's runner: the
 * `reported` message as a DeviceReport, and health/telemetry messages as flat gate signals
 * (`kpi.cycle_time` for KPIs). The manager's own arrival statistics are offered under `manager.`
 * (`manager.gap`, `manager.missing`) so a gate can use them besides what the agent says.
 * `protocol_errors.rate` is protocol errors per second over the telemetry window.
 */
import type { GateValue } from '../../protocol/gates/index.js';
import type { HealthMessage, ReportedMessage, TelemetryMessage } from '../../protocol/messages.js';
import type { ArrivalStats } from '../fleet-types.js';
import type { DeviceReport, RolloutEvent } from './types.js';

export function reportOf(m: ReportedMessage): DeviceReport {
  const active = m.slots[m.active_slot].snapshot;
  return {
    phase: m.phase,
    active,
    target: m.target,
    generation: m.generation,
    rollout: m.rollout,
    lastFailure: m.last_failure,
    bytes: m.progress?.bytes ?? null,
  };
}

function arrivalSignals(out: Record<string, GateValue>, a: ArrivalStats | undefined): void {
  if (!a) return;
  out['manager.gap'] = a.maxGapS;
  out['manager.missing'] = a.missing;
  if (a.sinceLastS !== null) out['manager.since_last'] = a.sinceLastS;
}

export function healthSignals(h: HealthMessage, arrival?: ArrivalStats): Record<string, GateValue> {
  const out: Record<string, GateValue> = {
    runtime_healthy: h.runtime_healthy,
    adapter_connected: h.adapter_connected,
    restarts: h.restarts,
    uptime: h.uptime,
  };
  arrivalSignals(out, arrival);
  return out;
}

export function telemetrySignals(t: TelemetryMessage, arrival?: ArrivalStats): Record<string, GateValue> {
  const out: Record<string, GateValue> = { gap: t.gap, drops: t.drops, rate: t.rate, window: t.window };
  if (t.protocol_errors !== undefined) {
    out.protocol_errors = t.protocol_errors;
    // The agent reports the errors counted over its sliding window (the delta over `window`
    // seconds, docs/runtime-contract.md), so the rate per second is that count over the window.
    out['protocol_errors.rate'] = Number((t.protocol_errors / t.window).toPrecision(6));
  }
  for (const [k, v] of Object.entries(t.kpi)) out[`kpi.${k}`] = v;
  arrivalSignals(out, arrival);
  return out;
}

/** Events for one ingested message, ready for `step`/`stepAll`. */
export const events = {
  reported: (device: string, m: ReportedMessage, now: number): RolloutEvent => ({
    type: 'reported',
    now,
    device,
    report: reportOf(m),
  }),
  health: (device: string, m: HealthMessage, now: number, arrival?: ArrivalStats): RolloutEvent => ({
    type: 'signals',
    now,
    device,
    source: 'health',
    snapshot: m.snapshot,
    values: healthSignals(m, arrival),
  }),
  telemetry: (device: string, m: TelemetryMessage, now: number, arrival?: ArrivalStats): RolloutEvent => ({
    type: 'signals',
    now,
    device,
    source: 'telemetry',
    snapshot: m.snapshot,
    values: telemetrySignals(m, arrival),
  }),
};

/**
 * Manager-side gate evaluation during a stage's hold (DESIGN.md "Rollout engine"): the plan's
 * gates are evaluated over a device's latest health, telemetry and behaviour signals. Stale data
 * (older than the plan's stale_after) and data about another snapshot count as missing, so they
 * make a gate inconclusive, never a pass. `baseline.X` reads what the device reported while it
 * still ran its baseline.
 */
import { evaluateGate, type Gate, type GateEvaluation, type GateValue, parseGate } from '../../protocol/gates/index.js';
import type { GatePlan } from './plan-types.js';
import type { DeviceRun, GateEvidence, SignalEvidence, SignalSource } from './types.js';

const SOURCES: readonly SignalSource[] = ['health', 'telemetry', 'behavior'];
/** Behaviour results (the acceptance suite) are one-off facts about an install: they do not go stale. */
const PERIODIC: ReadonlySet<SignalSource> = new Set(['health', 'telemetry']);
const MAX_FAILURE_EXAMPLES = 5;

const parsed = new Map<string, Gate>();
/** Parsed once per process; plan.ts already proved every source parses. */
function gateOf(source: string): Gate {
  let g = parsed.get(source);
  if (!g) {
    const r = parseGate(source);
    // A source that no longer parses (a plan saved by another version) keeps its text: evaluateGate fails it.
    g = r.ok ? r.value : { source, identifiers: [] };
    parsed.set(source, g);
  }
  return g;
}

export interface EvalContext {
  readonly now: number;
  readonly snapshot: string;
  readonly staleAfterMs: number;
}

export function lookupSignal(dev: DeviceRun, ctx: EvalContext, name: string): GateValue | undefined {
  if (name.startsWith('baseline.')) {
    const key = name.slice('baseline.'.length);
    return Object.hasOwn(dev.baselineSignals, key) ? dev.baselineSignals[key] : undefined;
  }
  for (const src of SOURCES) {
    const rec = dev.signals[src];
    if (!rec || !Object.hasOwn(rec.values, name)) continue;
    if (rec.snapshot !== null && rec.snapshot !== ctx.snapshot) return undefined;
    if (PERIODIC.has(src) && ctx.now - rec.at > ctx.staleAfterMs) return undefined;
    return rec.values[name];
  }
  return undefined;
}

/**
 * The condition a device is judged on for a gate: its site's override (sites.ts), else the gate;
 * for a sustained gate what is left without its baseline comparisons (they are judged per stage).
 * null: nothing to judge per device.
 */
export function deviceGateSource(gate: GatePlan, overrides?: Readonly<Record<string, string>>): string | null {
  if (overrides && Object.hasOwn(overrides, gate.name)) return overrides[gate.name] as string;
  return gate.sustained ? gate.sustained.residual : gate.source;
}

export function evaluateGates(
  gates: readonly GatePlan[],
  dev: DeviceRun,
  ctx: EvalContext,
  overrides?: Readonly<Record<string, string>>,
): { gate: GatePlan; result: GateEvaluation }[] {
  const out: { gate: GatePlan; result: GateEvaluation }[] = [];
  for (const gate of gates) {
    const source = deviceGateSource(gate, overrides);
    if (source === null) continue;
    out.push({ gate, result: evaluateGate(gateOf(source), (name) => lookupSignal(dev, ctx, name)) });
  }
  return out;
}

function addValue(prev: SignalEvidence | undefined, v: GateValue): SignalEvidence {
  const count = (prev?.count ?? 0) + 1;
  if (typeof v === 'number') {
    return {
      count,
      min: prev?.min === undefined ? v : Math.min(prev.min, v),
      max: prev?.max === undefined ? v : Math.max(prev.max, v),
      last: v,
    };
  }
  if (typeof v === 'boolean') {
    return { count, trues: (prev?.trues ?? 0) + (v ? 1 : 0), falses: (prev?.falses ?? 0) + (v ? 0 : 1), last: v };
  }
  return { count, last: v };
}

export function emptyEvidence(): GateEvidence {
  return { pass: 0, fail: 0, inconclusive: 0, signals: {}, failures: [] };
}

/** Folds one evaluation into a stage's evidence for that gate (counts, value ranges, failure examples). */
export function addEvidence(
  prev: GateEvidence | undefined,
  device: string,
  at: number,
  r: GateEvaluation,
): GateEvidence {
  const e = prev ?? emptyEvidence();
  const signals: Record<string, SignalEvidence> = { ...e.signals };
  for (const [name, v] of Object.entries(r.values)) {
    Object.defineProperty(signals, name, {
      value: addValue(Object.hasOwn(e.signals, name) ? e.signals[name] : undefined, v),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  const failures =
    r.verdict === 'fail' && e.failures.length < MAX_FAILURE_EXAMPLES
      ? [...e.failures, { device, at, values: r.values }]
      : e.failures;
  return {
    pass: e.pass + (r.verdict === 'pass' ? 1 : 0),
    fail: e.fail + (r.verdict === 'fail' ? 1 : 0),
    inconclusive: e.inconclusive + (r.verdict === 'inconclusive' ? 1 : 0),
    signals,
    failures,
  };
}

/**
 * Sample windows of sustained gates (docs/rollouts.md "Statistics"): for every stage, bounded
 * samples of the signals its baseline comparisons read, in three cohorts:
 *
 * - `treated`: the stage's devices on the new snapshot, from commit to the end of the stage;
 * - `control`: devices of the rollout not started yet, still on their baseline, of the stage's
 *   hardware classes, during the stage (same time of day, same load);
 * - `before`: the stage's own devices while they still ran their baseline.
 *
 * Memory is bounded by reservoir sampling (at most `max_samples` values per stage, cohort and
 * signal, a uniform sample of all offered), with a deterministic pseudo-random choice so the
 * engine stays a pure function of its events. Consecutive samples of one device are spaced by the
 * telemetry window (or `sample_every`): sliding-window means overlap and are correlated, and the
 * rank test assumes independent samples.
 */
import type { Draft } from './draft.js';
import type { GatePlan, Plan, StatisticsPlan } from './plan-types.js';
import { STAT_DEFAULTS } from './plan-types.js';
import { sampleValue } from './relative.js';
import type { Cohort, DeviceRun, RolloutEvent, SampleWindow } from './types.js';

type SignalsEvent = Extract<RolloutEvent, { type: 'signals' }>;

/** Leeway on the spacing: a telemetry message every `window` seconds arrives with jitter. */
const SPACING_SLACK = 0.9;

export function statsOf(plan: Plan): StatisticsPlan {
  return plan.statistics ?? STAT_DEFAULTS;
}

interface Needs {
  readonly gates: readonly GatePlan[];
  /** Signals read on the new snapshot, and on the baseline. */
  readonly treated: readonly string[];
  readonly baseline: readonly string[];
}

const needsCache = new WeakMap<Plan, Needs>();
export function needsOf(plan: Plan): Needs {
  let n = needsCache.get(plan);
  if (!n) {
    const gates = plan.gates.filter((g) => g.sustained);
    const terms = gates.flatMap((g) => g.sustained?.terms ?? []);
    n = {
      gates,
      treated: [...new Set(terms.map((t) => t.signal))],
      baseline: [...new Set(terms.map((t) => t.baselineSignal))],
    };
    needsCache.set(plan, n);
  }
  return n;
}

export function windowKey(cohort: Cohort, signal: string): string {
  return `${cohort}:${signal}`;
}

/** A 32-bit hash of the rollout id, key and index: the reservoir's deterministic "random" choice. */
function choose(salt: string, seen: number): number {
  let h = 0x811c9dc5 ^ seen;
  for (let i = 0; i < salt.length; i++) h = Math.imul(h ^ salt.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  h = Math.imul(h ^ (h >>> 12), 0x297a2d39);
  return ((h ^ (h >>> 15)) >>> 0) % (seen + 1);
}

/** Algorithm R: keep the first `cap` values, then replace a kept one with probability cap/(seen+1). */
export function offer(w: SampleWindow | undefined, value: number, cap: number, salt: string): SampleWindow {
  const seen = w?.seen ?? 0;
  const values = w?.values ?? [];
  if (values.length < cap) return { seen: seen + 1, values: [...values, value] };
  const j = choose(salt, seen);
  if (j >= cap) return { seen: seen + 1, values };
  const next = [...values];
  next[j] = value;
  return { seen: seen + 1, values: next };
}

function addTo(d: Draft, stage: number, cohort: Cohort, values: Readonly<Record<string, number>>): void {
  const cap = statsOf(d.plan).maxSamples;
  const st = d.stage(stage);
  const windows: Record<string, SampleWindow> = { ...(st.windows ?? {}) };
  for (const [signal, v] of Object.entries(values)) {
    const key = windowKey(cohort, signal);
    windows[key] = offer(windows[key], v, cap, `${d.s.id}/${stage}/${key}`);
  }
  d.patchStage(stage, {
    windows,
    ...(cohort === 'treated' ? { treatedSeen: (st.treatedSeen ?? 0) + 1 } : {}),
  });
}

function pick(names: readonly string[], e: SignalsEvent): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of names) {
    if (!Object.hasOwn(e.values, n)) continue;
    const v = sampleValue(e.values[n]);
    if (v !== null) Object.defineProperty(out, n, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Is the device still in the stage's treated cohort (holding, or succeeded while the stage awaits its verdict)? */
function treatedOf(d: Draft, dev: DeviceRun): boolean {
  if (dev.status === 'holding') return true;
  if (dev.status !== 'succeeded' || dev.stage !== d.s.stageIndex) return false;
  const ph = d.stage(dev.stage).phase;
  return ph === 'starting' || ph === 'holding';
}

/**
 * Offers a signals event to the sample windows. Returns the stage that got a treated sample (the
 * caller may run an early check), or null.
 */
export function sampleSignals(d: Draft, e: SignalsEvent): number | null {
  const needs = needsOf(d.plan);
  if (needs.gates.length === 0) return null;
  const dev = d.dev(e.device);
  if (!dev || dev.rollback) return null;
  const stats = statsOf(d.plan);
  const windowS = e.values.window;
  const spacing = stats.sampleEveryMs ?? (typeof windowS === 'number' && windowS > 0 ? windowS * 1000 : 0);
  const last = dev.sampledAt?.[e.source];
  if (last !== undefined && e.now - last < spacing * SPACING_SLACK) return null;

  let took = false;
  let treatedStage: number | null = null;
  const target = d.s.snapshot;
  if (e.snapshot === target && treatedOf(d, dev)) {
    const values = pick(needs.treated, e);
    if (Object.keys(values).length > 0) {
      addTo(d, dev.stage, 'treated', values);
      took = true;
      treatedStage = dev.stage;
    }
  } else if (dev.status === 'pending' && e.snapshot !== target && (e.snapshot !== null || dev.assignedAt === null)) {
    const values = pick(needs.baseline, e);
    if (Object.keys(values).length > 0) {
      addTo(d, dev.stage, 'before', values);
      took = true;
      const i = d.s.stageIndex;
      const cur = i >= 0 ? d.stage(i) : null;
      const comparable = !cur?.classes || dev.hardware === undefined || cur.classes.includes(dev.hardware);
      if (cur && (cur.phase === 'starting' || cur.phase === 'holding') && comparable) addTo(d, i, 'control', values);
    }
  }
  if (took) d.patchDev(dev.id, { sampledAt: { ...(dev.sampledAt ?? {}), [e.source]: e.now } });
  return treatedStage;
}

/** Samples offered to all of a stage's windows (to re-judge only when something new arrived). */
export function seenOf(windows: Readonly<Record<string, SampleWindow>> | undefined): number {
  let n = 0;
  for (const w of Object.values(windows ?? {})) n += w.seen;
  return n;
}

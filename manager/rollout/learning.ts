/**
 * The learning loop (docs/rollouts.md "Learning loop"): a gate that stopped a rolled-back
 * rollout becomes a regression check for the next plan of the same snapshot lineage (the same
 * manifest name), so the next release of that line is held to what tripped the last one. Pure:
 * the caller passes the outcomes it has in its ledger.
 */
import type { GatePlan, Plan } from './plan-types.js';
import { STAT_DEFAULTS } from './plan-types.js';
import type { Outcome } from './report.js';

/** The lineage of a snapshot label `name@version`: its manifest name. */
export function lineageOf(label: string): string {
  const at = label.lastIndexOf('@');
  return at > 0 ? label.slice(0, at) : label;
}

export interface RegressionCheck {
  readonly gate: GatePlan;
  /** The rollout whose stop taught it, and why it stopped. */
  readonly rollout: string;
  readonly snapshotLabel: string;
  readonly reason: string;
  readonly at: number;
}

/** The gate behind an outcome's stop, if the stop was a gate (by name, or a device's gate failure). */
function trippedGate(o: Outcome): GatePlan | null {
  const stop = o.stop;
  if (stop?.kind !== 'gate') return null;
  const name = stop.gate;
  const byName = name === undefined ? undefined : o.plan.gates.find((g) => g.name === name);
  if (byName) return byName;
  // Older outcomes name only the category: the plan's one gate of that category, when unique.
  const same = o.plan.gates.filter((g) => g.category === stop.category);
  return same.length === 1 ? (same[0] as GatePlan) : null;
}

/**
 * Regression checks for the next rollout of `lineage`: the tripped gates of its rolled-back
 * rollouts, newest first, one per gate source.
 */
export function regressionChecks(history: readonly Outcome[], lineage: string): RegressionCheck[] {
  const out: RegressionCheck[] = [];
  const seen = new Set<string>();
  const relevant = history
    .filter((o) => o.phase === 'rolled_back' && lineageOf(o.snapshotLabel) === lineage)
    .sort((a, b) => (b.endedAt ?? 0) - (a.endedAt ?? 0));
  for (const o of relevant) {
    const g = trippedGate(o);
    if (!g || seen.has(g.source)) continue;
    seen.add(g.source);
    out.push({
      gate: g,
      rollout: o.rollout,
      snapshotLabel: o.snapshotLabel,
      reason: o.stop?.detail ?? '',
      at: o.endedAt ?? 0,
    });
  }
  return out;
}

/**
 * The plan with the regression checks added as gates (marked with their origin). A check whose
 * condition the plan already has is left out; a name the plan already uses gets a `_regression`
 * suffix. A plan with `regression_checks: false` is returned as it is.
 */
export function withRegressionChecks(plan: Plan, checks: readonly RegressionCheck[]): Plan {
  if (plan.regressionChecks === false || checks.length === 0) return plan;
  const gates: GatePlan[] = [...plan.gates];
  for (const c of checks) {
    if (gates.some((g) => g.source === c.gate.source)) continue;
    let name = c.gate.name;
    for (let n = 1; gates.some((g) => g.name === name); n++) name = `${c.gate.name}_regression${n > 1 ? n : ''}`;
    gates.push({
      ...c.gate,
      name,
      origin: `regression check from rollout ${c.rollout} (${c.snapshotLabel}): ${c.reason}`,
    });
  }
  if (gates.length === plan.gates.length) return plan;
  const statistics = plan.statistics ?? (gates.some((g) => g.sustained) ? STAT_DEFAULTS : undefined);
  return { ...plan, gates, ...(statistics ? { statistics } : {}) };
}

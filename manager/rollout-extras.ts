/**
 * Glue between the RolloutService and the rollout engine II features (docs/rollouts.md "Sites",
 * "Dry run", "Learning loop"): the outcomes of a snapshot lineage from the store, the site rules a
 * running rollout should hold after an operator changed a site, and the dry-run view sent to the
 * CLI. Kept out of rollout-service.ts so that file only calls them.
 */
import {
  type DryRun,
  lineageOf,
  type Outcome,
  type RolloutState,
  type SiteConfig,
  type SiteRule,
} from './rollout/index.js';
import type { RolloutStore } from './rollout-store.js';

/** Outcomes of rolled-back rollouts of `lineage` (manifest name): the learning loop's history. */
export function lineageHistory(store: RolloutStore, lineage: string): Outcome[] {
  const out: Outcome[] = [];
  for (const row of store.list({ limit: 10_000 })) {
    if (row.phase !== 'rolled_back' || lineageOf(row.label) !== lineage) continue;
    const o = store.outcome(row.id);
    if (o) out.push(o);
  }
  return out;
}

/** The rules of the rollout's own sites among `sites`, or null when they equal what the state holds. */
export function changedSiteRules(state: RolloutState, sites: readonly SiteConfig[]): Record<string, SiteRule> | null {
  const used = new Set(Object.values(state.devices).map((d) => d.site));
  const rules: Record<string, SiteRule> = {};
  for (const s of sites) {
    if (used.has(s.site))
      rules[s.site] = { windows: s.windows, canary: s.canary, maxInFlight: s.maxInFlight, gates: s.gates };
  }
  return JSON.stringify(rules) === JSON.stringify(state.sites ?? {}) ? null : rules;
}

/** What the CLI's `rollout plan --dry-run` prints: the dry run without the engine state. */
export type PlanView = Omit<DryRun, 'state' | 'selection'>;

export function planViewOf(d: DryRun): PlanView {
  const { state: _state, selection: _selection, ...view } = d;
  return view;
}

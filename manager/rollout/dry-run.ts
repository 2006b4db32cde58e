/**
 * The dry run of a plan (`fleetgate rollout plan PLAN.yaml --dry-run`, docs/rollouts.md "Dry
 * run"): which devices each stage would take, when (maintenance windows, caps and the rate limit
 * in an estimated schedule), which gates apply to whom (site overrides, sustained comparisons,
 * regression checks learned from earlier rollouts) and what the canary covers — without touching
 * any device. It builds the rollout exactly as `createRollout` does, so the stages it shows are the
 * stages the engine will run.
 */
import type { Result } from '../../protocol/result.js';
import { type CreateRolloutInput, createRollout } from './create.js';
import { deviceGateSource } from './gate-eval.js';
import type { GatePlan, Plan } from './plan-types.js';
import type { Selection } from './select.js';
import { DEFAULT_SITE_RULE, type SiteRule, siteNextOpen, siteOpen } from './sites.js';
import type { RolloutState } from './types.js';

export interface DryRunOptions {
  /** Assumed time from assignment to commit, for the schedule estimate (default 2 minutes). */
  readonly installMs?: number;
}

export interface DryRunSite {
  readonly site: string;
  readonly devices: readonly string[];
  readonly windows: readonly string[];
  /** Open at the stage's estimated start? When not: when its window opens. */
  readonly openAtStart: boolean;
  readonly opensAt: number | null;
  readonly maxInFlight: number | null;
  readonly canary: boolean;
  /** The condition each gate judges this site's devices on (null: judged for the stage only). */
  readonly gates: Readonly<Record<string, string | null>>;
  /** Gates whose per-device condition is this site's override. */
  readonly overridden: readonly string[];
}

export interface DryRunStage {
  readonly name: string;
  readonly canary: boolean;
  readonly devices: readonly string[];
  readonly sites: readonly DryRunSite[];
  readonly holdMs: number;
  /** Estimated schedule: when the stage starts, when each device starts at the earliest, when it ends. */
  readonly startAt: number;
  readonly starts: Readonly<Record<string, number>>;
  readonly endAt: number;
}

export interface DryRunGate {
  readonly name: string;
  readonly source: string;
  readonly category: GatePlan['category'];
  readonly judge: 'sustained' | 'instant';
  /** Sustained gates: the baseline comparisons judged per stage, against which cohort. */
  readonly terms: readonly string[];
  readonly against: string | null;
  /** What devices judge (the residual of a sustained gate; null: nothing per device). */
  readonly perDevice: string | null;
  /** Sites with their own per-device condition for this gate. */
  readonly overrides: Readonly<Record<string, string>>;
  /** Set for a regression check added by the learning loop. */
  readonly origin: string | null;
}

export interface DryRun {
  readonly snapshot: string;
  readonly snapshotLabel: string;
  readonly planName: string | null;
  readonly now: number;
  readonly stages: readonly DryRunStage[];
  readonly gates: readonly DryRunGate[];
  readonly coverage: RolloutState['coverage'];
  readonly excluded: RolloutState['excluded'];
  readonly untargeted: readonly string[];
  readonly warnings: readonly string[];
  /** The plan as it would run (defaults filled in, regression checks added). */
  readonly plan: Plan;
  /** The initial engine state the rollout would start from (what `rollout start` saves). */
  readonly state: RolloutState;
  readonly selection: Selection;
}

const RATE_WINDOW_MS = 60_000;

/**
 * Earliest start per device of stage `i` starting at `startAt` (windows, per-site caps, rate limit,
 * in-flight cap), assuming each device commits `installMs` after its start and holds for the stage's hold.
 */
export function scheduleStage(
  state: RolloutState,
  i: number,
  startAt: number,
  installMs: number,
): { starts: Record<string, number>; endAt: number } {
  const plan = state.plan;
  const st = state.stages[i];
  const holdMs = plan.stages[i]?.holdMs ?? 0;
  const starts: Record<string, number> = {};
  if (!st || st.devices.length === 0) return { starts, endAt: startAt };
  // A device's slot: it occupies the in-flight cap until commit, its site's cap until its verdict.
  const flight: number[] = [];
  const siteBusy = new Map<string, number[]>();
  const recent: number[] = [];
  let endAt = startAt;
  for (const id of st.devices) {
    const dev = state.devices[id];
    if (!dev) continue;
    const rule: SiteRule = state.sites?.[dev.site] ?? DEFAULT_SITE_RULE;
    let t = startAt;
    for (let guard = 0; guard < 10_000; guard++) {
      const open = siteOpen(rule, t) ? t : (siteNextOpen(rule, t) ?? t);
      t = Math.max(t, open);
      const flying = flight.filter((e) => e > t);
      if (plan.inFlight !== null && flying.length >= plan.inFlight) {
        t = Math.min(...flying);
        continue;
      }
      const busy = (siteBusy.get(dev.site) ?? []).filter((e) => e > t);
      if (rule.maxInFlight !== null && busy.length >= rule.maxInFlight) {
        t = Math.min(...busy);
        continue;
      }
      const inWindow = recent.filter((s) => s > t - RATE_WINDOW_MS);
      if (plan.ratePerMinute !== null && inWindow.length >= plan.ratePerMinute) {
        t = Math.min(...inWindow) + RATE_WINDOW_MS;
        continue;
      }
      break;
    }
    starts[id] = t;
    recent.push(t);
    flight.push(t + installMs);
    siteBusy.set(dev.site, [...(siteBusy.get(dev.site) ?? []), t + installMs + holdMs]);
    endAt = Math.max(endAt, t + installMs + holdMs);
  }
  return { starts, endAt };
}

function siteView(state: RolloutState, site: string, devices: string[], startAt: number): DryRunSite {
  const rule = state.sites?.[site] ?? DEFAULT_SITE_RULE;
  const open = siteOpen(rule, startAt);
  const gates: Record<string, string | null> = {};
  const overridden: string[] = [];
  for (const g of state.plan.gates) {
    gates[g.name] = deviceGateSource(g, rule.gates);
    if (Object.hasOwn(rule.gates, g.name)) overridden.push(g.name);
  }
  return {
    site,
    devices,
    windows: rule.windows.map((w) => w.spec),
    openAtStart: open,
    opensAt: open ? null : siteNextOpen(rule, startAt),
    maxInFlight: rule.maxInFlight,
    canary: rule.canary,
    gates,
    overridden,
  };
}

/** The dry run: same inputs as `createRollout` (the id may be a placeholder). */
export function dryRun(input: CreateRolloutInput, opts: DryRunOptions = {}): Result<DryRun> {
  const created = createRollout(input);
  if (!created.ok) return created;
  const { state, selection } = created.value;
  const installMs = opts.installMs ?? 2 * 60_000;
  let startAt = input.now;
  const stages: DryRunStage[] = state.stages.map((st, i) => {
    const bySite = new Map<string, string[]>();
    for (const id of st.devices) {
      const site = state.devices[id]?.site ?? '';
      bySite.set(site, [...(bySite.get(site) ?? []), id]);
    }
    const { starts, endAt } = scheduleStage(state, i, startAt, installMs);
    const view: DryRunStage = {
      name: st.name,
      canary: st.canary,
      devices: st.devices,
      sites: [...bySite].map(([site, devices]) => siteView(state, site, devices, startAt)),
      holdMs: state.plan.stages[i]?.holdMs ?? 0,
      startAt,
      starts,
      endAt,
    };
    startAt = endAt;
    return view;
  });
  const gates: DryRunGate[] = state.plan.gates.map((g) => {
    const overrides: Record<string, string> = {};
    for (const [site, rule] of Object.entries(state.sites ?? {})) {
      if (Object.hasOwn(rule.gates, g.name)) overrides[site] = rule.gates[g.name] as string;
    }
    return {
      name: g.name,
      source: g.source,
      category: g.category,
      judge: g.sustained ? 'sustained' : 'instant',
      terms: g.sustained?.terms.map((t) => t.source) ?? [],
      against: g.sustained?.against ?? null,
      perDevice: deviceGateSource(g),
      overrides,
      origin: g.origin ?? null,
    };
  });
  return {
    ok: true,
    value: {
      snapshot: state.snapshot,
      snapshotLabel: state.snapshotLabel,
      planName: state.plan.name,
      now: input.now,
      stages,
      gates,
      coverage: state.coverage,
      excluded: state.excluded,
      untargeted: state.untargeted,
      warnings: state.warnings,
      plan: state.plan,
      state,
      selection,
    },
  };
}

/**
 * Creating a rollout: resolve the plan's snapshot reference, refuse a flagged snapshot unless
 * forced, select the devices of every stage (select.ts) and build the initial `pending` state.
 * Stages are selected once, here, from the fleet as it is now: the state then lists exactly which
 * devices each stage will touch (a dry run shows the same), and a device registered later is not
 * pulled into a running rollout.
 */
import { err, ok, type Result } from '../../protocol/result.js';
import type { SnapshotRecord } from '../fleet-types.js';
import { emptyCounts } from './draft.js';
import { regressionChecks, withRegressionChecks } from './learning.js';
import type { Plan, SnapshotRef } from './plan-types.js';
import type { Outcome } from './report.js';
import { type Compat, type FleetDevice, type Selection, selectDevices } from './select.js';
import type { SiteConfig, SiteRule } from './sites.js';
import type { DeviceRun, RolloutState, StageRun } from './types.js';

export type RolloutSnapshot = Pick<SnapshotRecord, 'id' | 'name' | 'version'> &
  Partial<Pick<SnapshotRecord, 'flagged' | 'manifest'>>;

/** Finds the plan's snapshot: an exact id, or the one snapshot called name@version. */
export function resolveSnapshotRef<S extends RolloutSnapshot>(ref: SnapshotRef, snapshots: readonly S[]): Result<S> {
  if ('id' in ref) {
    const s = snapshots.find((x) => x.id === ref.id);
    return s ? ok(s) : err('FG_SNAPSHOT_NOT_FOUND', ref.id);
  }
  const found = snapshots.filter((x) => x.name === ref.name && x.version === ref.version);
  if (found.length === 0) return err('FG_SNAPSHOT_NOT_FOUND', `${ref.name}@${ref.version}`);
  if (found.length > 1) {
    return err(
      'FG_SNAPSHOT_AMBIGUOUS',
      `${ref.name}@${ref.version} names ${found.length} snapshots (${found.map((x) => x.id.slice(0, 12)).join(', ')}); use the id`,
    );
  }
  return ok(found[0] as S);
}

/** The manifest's compatibility section as the manager stores it (JSON), when it has one. */
export function compatOf(s: RolloutSnapshot): Compat | null {
  const c = s.manifest?.compat as { hardware?: unknown; adapters?: unknown } | undefined;
  if (!c || typeof c !== 'object') return null;
  const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  return { hardware: strings(c.hardware), adapters: strings(c.adapters) };
}

export interface CreateRolloutInput {
  readonly id: string;
  readonly plan: Plan;
  readonly snapshot: RolloutSnapshot;
  readonly fleet: readonly FleetDevice[];
  readonly now: number;
  /** Roll out a flagged snapshot anyway (`--force`). */
  readonly force?: boolean;
  /** Per-site settings (sites.ts); sites not listed use the defaults. */
  readonly sites?: readonly SiteConfig[];
  /** Outcomes of earlier rollouts: gates that tripped in this lineage become regression checks (learning.ts). */
  readonly history?: readonly Outcome[];
}

/** FG_SNAPSHOT_FLAGGED (unless force), FG_PLAN_INVALID (baseline = target), FG_ROLLOUT_EMPTY. */
export function createRollout(input: CreateRolloutInput): Result<{ state: RolloutState; selection: Selection }> {
  const { snapshot, now } = input;
  const plan = withRegressionChecks(input.plan, regressionChecks(input.history ?? [], snapshot.name));
  if (snapshot.flagged && !input.force)
    return err('FG_SNAPSHOT_FLAGGED', `${snapshot.id.slice(0, 12)}: ${snapshot.flagged}`);
  if (plan.baseline !== 'current' && plan.baseline.id === snapshot.id) {
    return err('FG_PLAN_INVALID', 'the baseline is the snapshot being rolled out', 'baseline');
  }
  const siteList = input.sites ?? [];
  const noCanarySites = new Set(siteList.filter((s) => !s.canary).map((s) => s.site));
  const selection = selectDevices(plan, input.fleet, {
    compat: compatOf(snapshot),
    snapshot: snapshot.id,
    noCanarySites,
  });
  const total = selection.stages.reduce((n, s) => n + s.devices.length, 0);
  if (total === 0) {
    const why = selection.excluded.length
      ? `; excluded: ${selection.excluded.map((x) => `${x.device} (${x.reason})`).join(', ')}`
      : '';
    return err('FG_ROLLOUT_EMPTY', `no eligible device among ${input.fleet.length}${why}`);
  }
  const byId = new Map(input.fleet.map((d) => [d.id, d]));
  const devices: Record<string, DeviceRun> = {};
  const stages = selection.stages.map((sel, i): StageRun => {
    for (const id of sel.devices) {
      const f = byId.get(id) as FleetDevice;
      const online = f.state === undefined || f.state === 'online';
      devices[id] = {
        id,
        site: f.site,
        stage: i,
        status: 'pending',
        online,
        offlineSince: online ? null : now,
        blockedSince: null,
        baseline: plan.baseline === 'current' ? (f.activeSnapshot ?? null) : plan.baseline.id,
        generation: null,
        phase: null,
        active: f.activeSnapshot ?? null,
        bytes: null,
        assignedAt: null,
        committedAt: null,
        holdUntil: null,
        dueAt: null,
        endedAt: null,
        failure: null,
        skipReason: null,
        gates: {},
        signals: {},
        baselineSignals: {},
        hardware: f.hardware,
        rollback: null,
      };
    }
    const sp = plan.stages[i];
    return {
      name: sel.name,
      canary: sp?.canary ?? false,
      devices: sel.devices,
      sites: sel.sites,
      phase: 'waiting',
      startedAt: null,
      holdingAt: null,
      endedAt: null,
      acceptedFailures: 0,
      evidenceWaived: false,
      evidence: {},
      counts: { ...emptyCounts(), pending: sel.devices.length },
      classes: [...new Set(sel.devices.map((id) => (byId.get(id) as FleetDevice).hardware))].sort(),
    };
  });
  const state: RolloutState = {
    v: 1,
    id: input.id,
    snapshot: snapshot.id,
    snapshotLabel: `${snapshot.name}@${snapshot.version}`,
    plan,
    phase: 'pending',
    createdAt: now,
    startedAt: null,
    endedAt: null,
    stageIndex: -1,
    stages,
    devices,
    coverage: selection.coverage,
    excluded: selection.excluded,
    untargeted: selection.untargeted,
    warnings: selection.warnings,
    stop: null,
    rollbackReason: null,
    rollbackOpen: 0,
    outcome: null,
    recentStarts: [],
    seq: 0,
  };
  // The state keeps the rules of its own sites (a copy: reproducible runs and dry runs).
  const used = new Set(Object.values(devices).map((d) => d.site));
  const rules: Record<string, SiteRule> = {};
  for (const s of siteList) {
    if (used.has(s.site))
      rules[s.site] = { windows: s.windows, canary: s.canary, maxInFlight: s.maxInFlight, gates: s.gates };
  }
  if (Object.keys(rules).length > 0) return ok({ state: { ...state, sites: rules }, selection });
  return ok({ state, selection });
}

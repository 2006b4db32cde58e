/**
 * Reading a rollout state for people and for the ledger: per-stage progress, gate evidence (the
 * values seen), failures grouped by category with counts, example devices and the operator hint,
 * and the outcome summary recorded against the snapshot when the rollout ends.
 */
import { categoryHint, FAILURE_CATEGORIES, type FailureCategory } from '../../protocol/errors.js';
import type { Plan } from './plan-types.js';
import { thresholdCount } from './plan-values.js';
import type { CoverageReport, ExclusionReason } from './select.js';
import type {
  DeviceStatus,
  GateEvidence,
  GateStats,
  RolloutPhase,
  RolloutState,
  StagePhase,
  StopReason,
} from './types.js';

const EXAMPLES = 5;

export interface StageProgress {
  readonly name: string;
  readonly canary: boolean;
  readonly phase: StagePhase;
  readonly devices: number;
  readonly sites: number;
  readonly counts: Readonly<Record<DeviceStatus, number>>;
  /** Devices with a final status, 0..1. */
  readonly done: number;
  /** Failures the stage tolerates, and verdicts it needs, as counts for this stage's size. */
  readonly maxFailed: number;
  readonly minReported: number;
  readonly holdMs: number;
  readonly startedAt: number | null;
  readonly holdingAt: number | null;
  readonly endedAt: number | null;
  readonly gates: Readonly<Record<string, GateEvidence>>;
  /** Sustained gates: latest verdict with its evidence (n, medians, U, p, effect) per comparison. */
  readonly stats: Readonly<Record<string, GateStats>>;
  /** Samples taken per window (`cohort:signal` -> count offered). */
  readonly samples: Readonly<Record<string, number>>;
  /** The stage waits for samples until then (sustained gates inconclusive), or null. */
  readonly statsDueAt: number | null;
  /** Sites whose devices wait for their maintenance window: site -> next opening (ms). */
  readonly waiting: Readonly<Record<string, number>>;
}

export interface FailureGroup {
  readonly category: FailureCategory;
  readonly count: number;
  /** Up to 5 devices, earliest failures first. */
  readonly examples: readonly {
    readonly device: string;
    readonly stage: string;
    readonly code: string;
    readonly detail: string;
  }[];
  readonly codes: Readonly<Record<string, number>>;
  readonly hint: string;
}

export interface RollbackSummary {
  readonly devices: number;
  readonly confirmed: number;
  readonly open: number;
  readonly unconfirmed: readonly string[];
  /** Devices with nothing to return to (they ran no snapshot before). */
  readonly none: readonly string[];
}

export interface RolloutReport {
  readonly id: string;
  readonly snapshot: string;
  readonly snapshotLabel: string;
  readonly planName: string | null;
  readonly phase: RolloutPhase;
  /** The current (or last) stage. */
  readonly stage: string | null;
  readonly createdAt: number;
  readonly startedAt: number | null;
  readonly endedAt: number | null;
  readonly stop: StopReason | null;
  readonly outcome: string | null;
  readonly stages: readonly StageProgress[];
  readonly failures: readonly FailureGroup[];
  readonly skipped: Readonly<Record<string, number>>;
  readonly rollback: RollbackSummary | null;
  readonly coverage: CoverageReport;
  readonly excluded: readonly { readonly device: string; readonly reason: ExclusionReason }[];
  readonly untargeted: number;
  readonly warnings: readonly string[];
}

/** What the ledger records against the snapshot when a rollout ends (or on demand). */
export interface Outcome {
  readonly rollout: string;
  readonly snapshot: string;
  readonly snapshotLabel: string;
  readonly plan: Plan;
  readonly phase: RolloutPhase;
  readonly reason: string | null;
  readonly stop: StopReason | null;
  readonly createdAt: number;
  readonly startedAt: number | null;
  readonly endedAt: number | null;
  readonly stages: readonly {
    readonly name: string;
    readonly phase: StagePhase;
    readonly devices: number;
    readonly startedAt: number | null;
    readonly holdingAt: number | null;
    readonly endedAt: number | null;
    readonly counts: Readonly<Record<DeviceStatus, number>>;
    readonly gates: Readonly<Record<string, GateEvidence>>;
    /** Sustained gates' statistics (absent when the plan has none). */
    readonly stats?: Readonly<Record<string, GateStats>>;
  }[];
  /** Device failures per category (only categories that occurred). */
  readonly categories: Readonly<Partial<Record<FailureCategory, number>>>;
  readonly rollback: RollbackSummary | null;
}

export function failureGroups(state: RolloutState): FailureGroup[] {
  const groups = new Map<
    FailureCategory,
    { count: number; examples: FailureGroup['examples'][number][]; codes: Record<string, number>; firstAt: number[] }
  >();
  const failed = Object.values(state.devices)
    .filter((d) => d.status === 'failed' && d.failure !== null)
    .sort((a, b) => (a.failure?.at ?? 0) - (b.failure?.at ?? 0) || (a.id < b.id ? -1 : 1));
  for (const d of failed) {
    const f = d.failure as NonNullable<typeof d.failure>;
    const g = groups.get(f.category) ?? { count: 0, examples: [], codes: {}, firstAt: [] };
    g.count++;
    g.codes[f.code] = (g.codes[f.code] ?? 0) + 1;
    if (g.examples.length < EXAMPLES) {
      g.examples.push({ device: d.id, stage: state.stages[d.stage]?.name ?? '', code: f.code, detail: f.detail });
    }
    groups.set(f.category, g);
  }
  return [...groups]
    .map(([category, g]) => ({
      category,
      count: g.count,
      examples: g.examples,
      codes: g.codes,
      hint: categoryHint(category),
    }))
    .sort(
      (a, b) => b.count - a.count || FAILURE_CATEGORIES.indexOf(a.category) - FAILURE_CATEGORIES.indexOf(b.category),
    );
}

function rollbackSummary(state: RolloutState): RollbackSummary | null {
  const touched = Object.values(state.devices).filter((d) => d.rollback !== null);
  if (state.rollbackReason === null && touched.length === 0) return null;
  const with_ = (s: string) =>
    touched
      .filter((d) => d.rollback?.status === s)
      .map((d) => d.id)
      .sort();
  return {
    devices: touched.length,
    confirmed: with_('confirmed').length,
    open: state.rollbackOpen,
    unconfirmed: with_('unconfirmed'),
    none: with_('none'),
  };
}

export function rolloutReport(state: RolloutState): RolloutReport {
  const stages = state.stages.map((st, i): StageProgress => {
    const sp = state.plan.stages[i];
    const n = st.devices.length;
    const final = st.counts.succeeded + st.counts.failed + st.counts.skipped;
    return {
      name: st.name,
      canary: st.canary,
      phase: st.phase,
      devices: n,
      sites: st.sites.length,
      counts: st.counts,
      done: n === 0 ? 1 : final / n,
      maxFailed: sp ? thresholdCount(sp.maxFailed, n, 'floor') + st.acceptedFailures : 0,
      minReported: sp ? Math.min(thresholdCount(sp.minReported, n, 'ceil'), n) : 0,
      holdMs: sp?.holdMs ?? 0,
      startedAt: st.startedAt,
      holdingAt: st.holdingAt,
      endedAt: st.endedAt,
      gates: st.evidence,
      stats: st.stats ?? {},
      samples: Object.fromEntries(Object.entries(st.windows ?? {}).map(([k, w]) => [k, w.seen])),
      statsDueAt: st.statsDueAt ?? null,
      waiting: st.waiting ?? {},
    };
  });
  const skipped: Record<string, number> = {};
  for (const d of Object.values(state.devices)) {
    if (d.status === 'skipped') skipped[d.skipReason ?? 'skipped'] = (skipped[d.skipReason ?? 'skipped'] ?? 0) + 1;
  }
  return {
    id: state.id,
    snapshot: state.snapshot,
    snapshotLabel: state.snapshotLabel,
    planName: state.plan.name,
    phase: state.phase,
    stage: state.stages[state.stageIndex]?.name ?? null,
    createdAt: state.createdAt,
    startedAt: state.startedAt,
    endedAt: state.endedAt,
    stop: state.stop,
    outcome: state.outcome,
    stages,
    failures: failureGroups(state),
    skipped,
    rollback: rollbackSummary(state),
    coverage: state.coverage,
    excluded: state.excluded,
    untargeted: state.untargeted.length,
    warnings: state.warnings,
  };
}

export function outcomeOf(state: RolloutState): Outcome {
  const categories: Partial<Record<FailureCategory, number>> = {};
  for (const g of failureGroups(state)) categories[g.category] = g.count;
  return {
    rollout: state.id,
    snapshot: state.snapshot,
    snapshotLabel: state.snapshotLabel,
    plan: state.plan,
    phase: state.phase,
    reason: state.outcome,
    stop: state.stop,
    createdAt: state.createdAt,
    startedAt: state.startedAt,
    endedAt: state.endedAt,
    stages: state.stages.map((st) => ({
      name: st.name,
      phase: st.phase,
      devices: st.devices.length,
      startedAt: st.startedAt,
      holdingAt: st.holdingAt,
      endedAt: st.endedAt,
      counts: st.counts,
      gates: st.evidence,
      ...(st.stats ? { stats: st.stats } : {}),
    })),
    categories,
    rollback: rollbackSummary(state),
  };
}

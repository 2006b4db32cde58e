/**
 * What the rollout API and CLI show: a summary per rollout, the detail (report of
 * manager/rollout/report.ts with the plan's gates next to their evidence), a device row, and a
 * snapshot's history (every rollout of it with its outcome, and the marks it received).
 */
import type { FailureCategory } from '../protocol/errors.js';
import type { SnapshotRecord } from './fleet-types.js';
import type {
  DeviceRun,
  DeviceStatus,
  Outcome,
  RollbackStatus,
  RolloutPhase,
  RolloutReport,
  RolloutState,
} from './rollout/index.js';
import type { LedgerRecord, RolloutRow } from './rollout-store.js';

export type RolloutCommand = 'pause' | 'resume' | 'abort' | 'rollback';
export const ROLLOUT_COMMANDS: readonly RolloutCommand[] = ['pause', 'resume', 'abort', 'rollback'];

export interface RolloutSummary {
  readonly id: string;
  readonly snapshot: string;
  readonly snapshotLabel: string;
  readonly name: string | null;
  readonly phase: RolloutPhase;
  /** The current (or last) stage. */
  readonly stage: string | null;
  readonly devices: number;
  readonly counts: Readonly<Record<DeviceStatus, number>>;
  readonly created: number;
  readonly updated: number;
  readonly ended: number | null;
  /** Started with --force over a flagged snapshot. */
  readonly forced: boolean;
  /** Why it ended (final phases), or why it stopped. */
  readonly reason: string | null;
}

export interface RolloutDeviceView {
  readonly id: string;
  readonly site: string;
  readonly stage: string;
  readonly status: DeviceStatus;
  readonly online: boolean;
  readonly phase: string | null;
  readonly active: string | null;
  readonly generation: number | null;
  readonly failure: { readonly category: FailureCategory; readonly code: string; readonly detail: string } | null;
  readonly skipReason: string | null;
  readonly gates: Readonly<Record<string, string>>;
  readonly rollback: RollbackStatus | null;
}

export interface RolloutDetail {
  readonly rollout: RolloutSummary;
  /** The plan's gates, as written: the thresholds the report's evidence is judged against. */
  readonly gates: readonly { readonly name: string; readonly source: string; readonly category: string }[];
  readonly report: RolloutReport;
  /** The ledger's outcome once the rollout ended. */
  readonly outcome: Outcome | null;
  readonly devices?: readonly RolloutDeviceView[];
}

export interface SnapshotHistory {
  readonly snapshot: SnapshotRecord;
  /** Newest first. */
  readonly rollouts: readonly (RolloutSummary & { readonly outcome: Outcome | null })[];
  /** known_good / flagged marks rollouts set, oldest first. */
  readonly marks: readonly LedgerRecord[];
  /** Operators' notes on its rollouts (`fleetgate rollout note`), oldest first. */
  readonly notes: readonly LedgerRecord[];
}

const ZERO: Record<DeviceStatus, number> = {
  pending: 0,
  assigned: 0,
  downloading: 0,
  trial: 0,
  holding: 0,
  succeeded: 0,
  failed: 0,
  skipped: 0,
};

function sumCounts(stages: readonly { readonly counts: Readonly<Record<DeviceStatus, number>> }[]) {
  const out = { ...ZERO };
  for (const st of stages) for (const k of Object.keys(out) as DeviceStatus[]) out[k] += st.counts[k];
  return out;
}

/** From the live/saved state when there is one, else from the outcome (final rollouts). */
export function summaryOf(row: RolloutRow, state: RolloutState | null, outcome: Outcome | null): RolloutSummary {
  const stages = state?.stages ?? outcome?.stages ?? [];
  const counts = sumCounts(stages);
  const phase = state?.phase ?? outcome?.phase ?? row.phase;
  const stage = state
    ? (state.stages[state.stageIndex]?.name ?? null)
    : ([...(outcome?.stages ?? [])].reverse().find((s) => s.startedAt !== null)?.name ?? null);
  const reason = state ? (state.outcome ?? state.stop?.detail ?? null) : (outcome?.reason ?? null);
  return {
    id: row.id,
    snapshot: row.snapshot,
    snapshotLabel: row.label,
    name: row.name,
    phase,
    stage,
    // Every device of the rollout has exactly one status.
    devices: Object.values(counts).reduce((a, b) => a + b, 0),
    counts,
    created: row.created,
    updated: row.updated,
    ended: state?.endedAt ?? outcome?.endedAt ?? row.ended,
    forced: row.forced,
    reason,
  };
}

export function viewOfDevice(state: RolloutState, d: DeviceRun): RolloutDeviceView {
  const gates: Record<string, string> = {};
  for (const [name, g] of Object.entries(d.gates)) gates[name] = g.verdict;
  return {
    id: d.id,
    site: d.site,
    stage: state.stages[d.stage]?.name ?? '',
    status: d.status,
    online: d.online,
    phase: d.phase,
    active: d.active,
    generation: d.generation,
    failure: d.failure ? { category: d.failure.category, code: d.failure.code, detail: d.failure.detail } : null,
    skipReason: d.skipReason,
    gates,
    rollback: d.rollback?.status ?? null,
  };
}

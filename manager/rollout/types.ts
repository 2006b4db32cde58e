/**
 * Types of the rollout engine (engine.ts): its persisted state, the events it reacts to and the
 * effects it asks for. Everything is plain JSON: the manager saves the state after every step
 * (before running the effects, Mender style) and a restarted manager resumes from it.
 */
import type { FailureCategory } from '../../protocol/errors.js';
import type { GateValue, Verdict } from '../../protocol/gates/index.js';
import type { Failure, TrialSpec, UpdatePhase } from '../../protocol/messages.js';
import type { ProtocolError } from '../../protocol/result.js';
import type { Plan } from './plan-types.js';
import type { Outcome } from './report.js';
import type { CoverageReport, ExclusionReason } from './select.js';
import type { SiteRule } from './sites.js';
import type { StatEvidence, StatVerdict } from './stats.js';

// ---------------------------------------------------------------------------------------------
// State

export type RolloutPhase =
  | 'pending'
  | 'running'
  | 'paused'
  | 'rolling_back'
  | 'completed'
  | 'rolled_back'
  | 'aborted'
  | 'failed';

export const TERMINAL_PHASES: readonly RolloutPhase[] = ['completed', 'rolled_back', 'aborted', 'failed'];

/**
 * waiting: not reached yet; starting: assigning devices (rate limit, in-flight cap); holding: every
 * device started, waiting for verdicts; passed: judged good; stopped: the rollout stopped in it;
 * empty: the selection gave it no device.
 */
export type StagePhase = 'waiting' | 'starting' | 'holding' | 'passed' | 'stopped' | 'empty';

/** A device's progress in its stage. succeeded/failed/skipped are final. */
export type DeviceStatus =
  | 'pending'
  | 'assigned'
  | 'downloading'
  | 'trial'
  | 'holding'
  | 'succeeded'
  | 'failed'
  | 'skipped';

export const FINAL_DEVICE_STATUSES: readonly DeviceStatus[] = ['succeeded', 'failed', 'skipped'];

/** Rollback of one touched device: pending (to be assigned) -> assigned -> confirmed | unconfirmed; none = no baseline. */
export type RollbackStatus = 'pending' | 'assigned' | 'confirmed' | 'unconfirmed' | 'none';

export type SignalSource = 'health' | 'telemetry' | 'behavior';

export interface SignalRecord {
  /** Receive time at the manager (the `now` of the signals event): staleness never trusts device clocks. */
  readonly at: number;
  /** Snapshot the data is about (health/telemetry carry it); null = unknown. */
  readonly snapshot: string | null;
  readonly values: Readonly<Record<string, GateValue>>;
}

export interface DeviceFailure {
  readonly category: FailureCategory;
  readonly code: string;
  readonly detail: string;
  readonly at: number;
  /** The plan gate that failed (gate failures during the hold). */
  readonly gate?: string;
}

export interface DeviceRun {
  readonly id: string;
  readonly site: string;
  /** Index of the stage the device belongs to. */
  readonly stage: number;
  readonly status: DeviceStatus;
  readonly online: boolean;
  readonly offlineSince: number | null;
  /** When a pending device was first due to start but was offline (skip/fail clock). */
  readonly blockedSince: number | null;
  /** Snapshot to return to on rollback (null: the device ran nothing before). */
  readonly baseline: string | null;
  /** Desired generation of the last assignment, when the runner fed it back (`assigned` event). */
  readonly generation: number | null;
  /** Latest reported update phase, active snapshot and download progress. */
  readonly phase: UpdatePhase | null;
  readonly active: string | null;
  readonly bytes: number | null;
  readonly assignedAt: number | null;
  readonly committedAt: number | null;
  readonly holdUntil: number | null;
  /** Timeout moment for the current wait (progress, or conclusive gate data after the hold). */
  readonly dueAt: number | null;
  readonly endedAt: number | null;
  readonly failure: DeviceFailure | null;
  readonly skipReason: string | null;
  /** Latest verdict per gate while holding, with the signals it missed. */
  readonly gates: Readonly<
    Record<string, { readonly verdict: Verdict; readonly at: number; readonly missing: readonly string[] }>
  >;
  readonly signals: Readonly<Partial<Record<SignalSource, SignalRecord>>>;
  /** Signals seen while the device still ran its baseline (gates may read them as `baseline.X`). */
  readonly baselineSignals: Readonly<Record<string, GateValue>>;
  /** Hardware class (control devices for a sustained gate must share one with the stage). */
  readonly hardware?: string;
  /** When a statistics sample was last taken from the device, per source (samples are spaced). */
  readonly sampledAt?: Readonly<Partial<Record<SignalSource, number>>>;
  /** Its site's maintenance windows kept it from starting (sites.ts); the next opening. */
  readonly waitingWindow?: number | null;
  readonly rollback: {
    readonly status: RollbackStatus;
    readonly target: string | null;
    readonly since: number;
    readonly dueAt: number | null;
    readonly generation: number | null;
    readonly endedAt: number | null;
  } | null;
}

/** Values seen for one signal across a stage's evaluations. */
export interface SignalEvidence {
  readonly count: number;
  readonly min?: number;
  readonly max?: number;
  readonly trues?: number;
  readonly falses?: number;
  readonly last: GateValue;
}

export interface GateEvidence {
  readonly pass: number;
  readonly fail: number;
  readonly inconclusive: number;
  readonly signals: Readonly<Record<string, SignalEvidence>>;
  /** The first few failing evaluations: device, time and the values that failed. */
  readonly failures: readonly {
    readonly device: string;
    readonly at: number;
    readonly values: Readonly<Record<string, GateValue>>;
  }[];
}

export interface StageRun {
  readonly name: string;
  readonly canary: boolean;
  readonly devices: readonly string[];
  readonly sites: readonly string[];
  readonly phase: StagePhase;
  readonly startedAt: number | null;
  readonly holdingAt: number | null;
  readonly endedAt: number | null;
  /** Failures an operator accepted by resuming after a stop (they no longer count against max_failed). */
  readonly acceptedFailures: number;
  /** An operator resumed after `insufficient_evidence`: the stage may pass with fewer reports. */
  readonly evidenceWaived: boolean;
  readonly evidence: Readonly<Record<string, GateEvidence>>;
  /** Devices per status (kept by the engine so that judging never scans the stage). */
  readonly counts: Readonly<Record<DeviceStatus, number>>;
  /** Hardware classes of the stage's devices (control samples must come from one of them). */
  readonly classes?: readonly string[];
  /** Sample windows of sustained gates, by `cohort:signal` (windows.ts). */
  readonly windows?: Readonly<Record<string, SampleWindow>>;
  /** Latest statistical verdict per sustained gate, with its evidence. */
  readonly stats?: Readonly<Record<string, GateStats>>;
  /** Samples of the updated devices taken so far, and how many there were at the last early check. */
  readonly treatedSeen?: number;
  readonly earlyCheckedAt?: number;
  /** Samples in all windows when the stage was last judged (re-judge only on new data). */
  readonly statsJudgedSeen?: number;
  /** All devices are final but the sustained gates are inconclusive: samples are awaited until then. */
  readonly statsDueAt?: number | null;
  /** Sites with pending devices outside their maintenance window: site -> next opening (ms). */
  readonly waiting?: Readonly<Record<string, number>>;
}

/** Cohorts of a sustained gate: the updated devices, and the two kinds of baseline. */
export type Cohort = 'treated' | 'control' | 'before';

/** A bounded sample (reservoir sampling): `seen` values offered, `values` kept (at most max_samples). */
export interface SampleWindow {
  readonly seen: number;
  readonly values: readonly number[];
}

export interface TermStats {
  /** The baseline comparison, as written. */
  readonly term: string;
  readonly against: 'control' | 'before';
  readonly evidence: StatEvidence;
}

export interface GateStats {
  readonly verdict: StatVerdict;
  readonly at: number;
  /** An early check during the hold (overwhelming evidence only), not the judgement at its end. */
  readonly early: boolean;
  readonly terms: readonly TermStats[];
}

export type StopKind =
  | 'canary'
  | 'threshold'
  | 'gate'
  | 'gate_error'
  | 'insufficient_evidence'
  | 'manual_pause'
  | 'manual_abort'
  | 'manual_rollback';

export interface StopReason {
  readonly kind: StopKind;
  readonly at: number;
  readonly stage: string | null;
  readonly device: string | null;
  readonly category: FailureCategory | null;
  readonly detail: string;
  /** The plan gate behind a gate stop, when one is known. */
  readonly gate?: string;
  /** A sustained gate's statistics that stopped the rollout (or were inconclusive). */
  readonly stats?: GateStats;
}

export interface RolloutState {
  readonly v: 1;
  readonly id: string;
  readonly snapshot: string;
  /** `name@version`, for humans. */
  readonly snapshotLabel: string;
  readonly plan: Plan;
  readonly phase: RolloutPhase;
  readonly createdAt: number;
  readonly startedAt: number | null;
  readonly endedAt: number | null;
  /** Index of the current stage (-1 before start). */
  readonly stageIndex: number;
  readonly stages: readonly StageRun[];
  readonly devices: Readonly<Record<string, DeviceRun>>;
  readonly coverage: CoverageReport;
  readonly excluded: readonly { readonly device: string; readonly reason: ExclusionReason }[];
  readonly untargeted: readonly string[];
  readonly warnings: readonly string[];
  /** Why it stopped, paused by itself, or was stopped by an operator (the latest such reason). */
  readonly stop: StopReason | null;
  /** Why the rollback began (rolling_back and after). */
  readonly rollbackReason: string | null;
  /** Touched devices whose rollback is not settled yet (pending or assigned). */
  readonly rollbackOpen: number;
  /** Why it ended (terminal phases). */
  readonly outcome: string | null;
  /** Start times within the last minute (rate limit window). */
  readonly recentStarts: readonly number[];
  /** Steps taken: a save counter for the runner (a state saved twice with the same seq is a loop). */
  readonly seq: number;
  /** Per-site settings of the rollout's sites (sites.ts): windows, canary eligibility, caps, gate overrides. */
  readonly sites?: Readonly<Record<string, SiteRule>>;
}

// ---------------------------------------------------------------------------------------------
// Events (time comes in events; the engine never reads a clock)

/** What the engine needs of a device's `reported` message (reportOf() builds it). */
export interface DeviceReport {
  readonly phase: UpdatePhase;
  readonly active: string | null;
  readonly target: string | null;
  readonly generation: number;
  readonly rollout: string | null;
  readonly lastFailure: Failure | null;
  readonly bytes: number | null;
}

/** An operator command; `reason` lands in the ledger and the outcome. */
export interface CommandEvent<T extends string> {
  readonly type: T;
  readonly now: number;
  readonly reason?: string;
}

/** Connection state from the device's retained `state` topic (online, or lost/will). */
export interface ConnectionEvent<T extends string> {
  readonly type: T;
  readonly now: number;
  readonly device: string;
}

export type RolloutEvent =
  | { readonly type: 'start'; readonly now: number }
  | { readonly type: 'tick'; readonly now: number }
  | { readonly type: 'reported'; readonly now: number; readonly device: string; readonly report: DeviceReport }
  /** Latest health/telemetry/behaviour signals of a device (signals.ts builds them from messages). */
  | {
      readonly type: 'signals';
      readonly now: number;
      readonly device: string;
      readonly source: SignalSource;
      readonly snapshot: string | null;
      readonly values: Readonly<Record<string, GateValue>>;
    }
  | ConnectionEvent<'online'>
  | ConnectionEvent<'offline'>
  /** The runner executed an assign effect: the generations of the signed documents. */
  | {
      readonly type: 'assigned';
      readonly now: number;
      readonly devices: readonly { readonly device: string; readonly generation: number }[];
    }
  /** The runner could not execute an assign effect. `retry`: a transient cause (broker down). */
  | {
      readonly type: 'assign-failed';
      readonly now: number;
      readonly devices: readonly string[];
      readonly code: string;
      readonly category: string;
      readonly detail: string;
      readonly retry: boolean;
    }
  | CommandEvent<'pause'>
  | CommandEvent<'resume'>
  | CommandEvent<'abort'>
  | CommandEvent<'rollback'>
  /** The manager started again with this saved state. */
  | { readonly type: 'restarted'; readonly now: number }
  /** An operator changed site settings: the rollout's sites as they are now (replaces the copy in the state). */
  | { readonly type: 'sites'; readonly now: number; readonly sites: Readonly<Record<string, SiteRule>> };

export type EventType = RolloutEvent['type'];

// ---------------------------------------------------------------------------------------------
// Effects (run by the manager after it saved `next`)

export interface LedgerEvent {
  readonly ts: number;
  /** e.g. rollout.started, stage.started, device.failed, stage.passed, rollout.stopped, rollback.confirmed */
  readonly kind: string;
  readonly stage: string | null;
  readonly device: string | null;
  readonly data: Readonly<Record<string, unknown>>;
}

export type Effect =
  /** Save the state now, before running the effects that follow. */
  | { readonly type: 'persist' }
  /**
   * FleetService.assign(devices, snapshot, {rollout, stage, trial, baseline}). mode `ensure` (after a
   * restart): assign only devices whose stored desired target is not already `snapshot`.
   */
  | {
      readonly type: 'assign';
      readonly rollout: string;
      readonly snapshot: string;
      readonly devices: readonly string[];
      readonly stage: string;
      readonly trial: Partial<TrialSpec>;
      /** The plan's explicit baseline (kept fetchable for the devices); null = the service default. */
      readonly baseline: string | null;
      readonly mode: 'new' | 'ensure';
    }
  /** Desired state back to the baseline, one assign per baseline snapshot (stage `rollback`). */
  | {
      readonly type: 'assign-baseline';
      readonly rollout: string;
      readonly groups: readonly { readonly snapshot: string; readonly devices: readonly string[] }[];
      readonly mode: 'new' | 'ensure';
    }
  | { readonly type: 'record-event'; readonly event: LedgerEvent }
  | {
      readonly type: 'mark-snapshot';
      readonly snapshot: string;
      readonly mark: 'known_good' | 'flagged';
      readonly reason: string | null;
    }
  /** The rollout reached a final phase: its outcome for the ledger (report.ts outcomeOf). */
  | { readonly type: 'record-outcome'; readonly outcome: Outcome };

export interface StepResult {
  readonly next: RolloutState;
  readonly effects: readonly Effect[];
  /** Set when a command (start, pause, resume, abort, rollback) is not allowed in this phase. */
  readonly rejected?: ProtocolError;
}

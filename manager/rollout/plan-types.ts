/**
 * A rollout plan after parsing and validation (plan.ts): plain JSON, all durations in
 * milliseconds, all defaults filled in, every gate known to parse. The engine state embeds it, so
 * a persisted rollout carries the exact plan it runs.
 */
import type { FailureCategory } from '../../protocol/errors.js';

/** `name@version` (resolved against the snapshot repository) or a full snapshot id. */
export type SnapshotRef = { readonly id: string } | { readonly name: string; readonly version: string };

/** `current`: each device's active snapshot when the rollout is created; or one explicit snapshot id. */
export type BaselineRef = 'current' | { readonly id: string };

/** How many devices a stage takes from those not used by earlier stages. */
export type StageSize =
  | { readonly kind: 'sites'; readonly count: number }
  | { readonly kind: 'devices'; readonly count: number }
  /** Percent of the rollout's whole eligible fleet, rounded up. */
  | { readonly kind: 'percent'; readonly percent: number }
  | { readonly kind: 'all' }
  /** The fewest devices (or sites) that cover the fleet's hardware classes and adapter sets. */
  | { readonly kind: 'auto'; readonly unit: 'devices' | 'sites' };

/** Every given field must match (AND); within a list, any value matches (OR). */
export interface Selector {
  readonly sites?: readonly string[];
  readonly labels?: Readonly<Record<string, string>>;
  readonly devices?: readonly string[];
  readonly hardware?: readonly string[];
}

/** A count of devices, or a percent of the stage's devices. */
export type Threshold =
  | { readonly kind: 'count'; readonly count: number }
  | { readonly kind: 'percent'; readonly percent: number };

/** Trial parameters handed to devices in the desired document (merged over the service default). */
export interface PlanTrial {
  readonly window_s?: number;
  readonly crash_loop?: { readonly restarts: number; readonly within_s: number };
  readonly max_agent_starts?: number;
}

export interface StagePlan {
  readonly name: string;
  /** Canary stages stop the rollout on any revert or crash loop and pick devices for coverage. */
  readonly canary: boolean;
  readonly size: StageSize;
  readonly select: Selector | null;
  /** Observation window after a device commits; its gates must hold for all of it. */
  readonly holdMs: number;
  readonly trial: PlanTrial;
  /** The stage stops when more devices than this failed. */
  readonly maxFailed: Threshold;
  /** The stage passes only when at least this many devices reached a verdict (succeeded or failed). */
  readonly minReported: Threshold;
}

export type OfflinePolicy = 'wait' | 'skip' | 'fail';
export type OnFailure = 'rollback' | 'pause';

export interface GatePlan {
  readonly name: string;
  readonly source: string;
  /** health -> health_gate, telemetry -> telemetry_gate, anything else -> behavior_gate. */
  readonly category: Extract<FailureCategory, 'health_gate' | 'telemetry_gate' | 'behavior_gate'>;
  /**
   * Set for a gate that reads `baseline.X` and is judged `sustained` (the default for such gates,
   * relative.ts): its baseline comparisons are two-sample tests per stage over the hold, the rest
   * is judged per device. Absent: the gate is judged per device on each evaluation (`instant`).
   */
  readonly sustained?: SustainedGate;
  /** Where the gate came from when it is not the plan's own (the learning loop, learning.ts). */
  readonly origin?: string;
}

/** One comparison with the baseline: `expr op baselineExpr`, normalised so the current side is left. */
export interface RelativeTerm {
  /** The comparison as written (canonical form). */
  readonly source: string;
  /** The one current signal the left side reads, and the side's expression. */
  readonly signal: string;
  readonly expr: string;
  /** The one baseline signal (without `baseline.`) the right side reads, and that side's expression. */
  readonly baselineSignal: string;
  readonly baselineExpr: string;
  /** `<`/`<=`: the current side must not be larger; `>`/`>=`: must not be smaller. */
  readonly op: '<' | '<=' | '>' | '>=';
}

/**
 * Which baseline a sustained gate compares with. `control`: devices of the rollout still on their
 * baseline during the same hold, of the same hardware classes; `before`: the stage's own devices
 * before their update; `auto`: control when it has enough samples, else before.
 */
export type BaselineCohort = 'auto' | 'control' | 'before';

export interface SustainedGate {
  readonly terms: readonly RelativeTerm[];
  /** The gate without its baseline comparisons, judged per device (null: nothing is left). */
  readonly residual: string | null;
  readonly against: BaselineCohort;
}

/** How sustained gates are judged (stats.ts); plan key `statistics`. */
export interface StatisticsPlan {
  /** Significance level of the judgement at the end of a stage's hold. */
  readonly alpha: number;
  /** Significance level to stop before the hold ends (overwhelming evidence only). */
  readonly earlyAlpha: number;
  /** Smallest median deviation, relative to the baseline side, that counts (0.01 = 1%). */
  readonly minEffect: number;
  /** Smallest absolute median deviation that counts. */
  readonly minAbsEffect: number;
  /** Samples each side needs for a verdict; fewer is inconclusive. */
  readonly minSamples: number;
  /** Samples of the updated devices needed before an early stop is considered. */
  readonly earlyMinSamples: number;
  /**
   * At most one sample per device this often (ms); null = the telemetry's own window, so that
   * consecutive samples do not overlap (overlapping sliding windows are correlated, which would
   * make the test see "significance" in noise).
   */
  readonly sampleEveryMs: number | null;
  /** Samples kept per stage, cohort and signal (reservoir sampling: bounded memory). */
  readonly maxSamples: number;
}

export const STAT_DEFAULTS: StatisticsPlan = {
  alpha: 0.01,
  earlyAlpha: 1e-6,
  minEffect: 0.01,
  minAbsEffect: 0,
  minSamples: 10,
  earlyMinSamples: 20,
  sampleEveryMs: null,
  maxSamples: 400,
};

export interface Plan {
  readonly v: 1;
  readonly name: string | null;
  readonly snapshot: SnapshotRef;
  readonly baseline: BaselineRef;
  /** Restricts the whole rollout (null = every registered device). */
  readonly select: Selector | null;
  readonly gates: readonly GatePlan[];
  /** Hand the health/telemetry/behavior gates to devices as local trial gates. */
  readonly localGates: boolean;
  readonly stages: readonly StagePlan[];
  /** Devices started per minute (null = no limit). */
  readonly ratePerMinute: number | null;
  /** Devices between assignment and commit at once (null = no limit). */
  readonly inFlight: number | null;
  /** A device without progress (or without conclusive gate data after its hold) this long times out. */
  readonly deadlineMs: number;
  /** Health/telemetry older than this is stale: its signals count as missing. */
  readonly staleAfterMs: number;
  readonly offline: { readonly policy: OfflinePolicy; readonly afterMs: number };
  readonly onFailure: OnFailure;
  /** A gate failing on any device stops the rollout even when max_failed would allow it. */
  readonly stopOnGateFailure: boolean;
  /** How sustained (baseline-relative) gates are judged; absent in plans saved before: STAT_DEFAULTS. */
  readonly statistics?: StatisticsPlan;
  /** `regression_checks: false` turns the learning loop off for this plan (learning.ts); default on. */
  readonly regressionChecks?: boolean;
}

export const PLAN_DEFAULTS = {
  holdMs: 5 * 60_000,
  deadlineMs: 15 * 60_000,
  staleAfterMs: 60_000,
  offlineAfterMs: 5 * 60_000,
  inFlight: 100,
} as const;

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
}

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
}

export const PLAN_DEFAULTS = {
  holdMs: 5 * 60_000,
  deadlineMs: 15 * 60_000,
  staleAfterMs: 60_000,
  offlineAfterMs: 5 * 60_000,
  inFlight: 100,
} as const;

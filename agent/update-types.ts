/**
 * Types of the agent's update state machine (agent/update-machine.ts): its persisted state, the
 * events it reacts to and the effects it asks for. Effects are plain data; agent/update-runner.ts
 * saves the next state and then runs them (Mender client style, see /work/shared/STYLE.md).
 */
import type { ErrorCode } from '../protocol/errors.js';
import type { Failure, SlotName, SlotState, TrialSpec, UpdatePhase } from '../protocol/messages.js';

export type Phase = UpdatePhase;

/** The local gates a trial evaluates (DESIGN.md "Rollout engine": health, telemetry, behavior). */
export type GateName = 'health' | 'telemetry' | 'behavior';
export type GateVerdict = 'pass' | 'fail' | 'inconclusive';

/**
 * A desired-state document after the caller opened it with `openDesired` (both signatures,
 * schema, device id and expiry checked). The machine only checks what needs the device's own
 * memory: replay (generation), bad-snapshot memory, and where the snapshot already sits.
 */
export interface DesiredTarget {
  readonly generation: number;
  readonly rollout: string | null;
  readonly stage: string | null;
  /** Snapshot id: sha256 hex of the manifest COSE bytes. */
  readonly snapshot: string;
  /** The release-signed manifest (COSE_Sign1 bytes). */
  readonly manifest: Uint8Array;
  /** Signed payload size and digest (lowercase hex) from the manifest. */
  readonly size: number;
  readonly sha256: string;
  readonly trial: TrialSpec;
  /** Expiry of the desired document (ms); a deferred document is dropped once expired. */
  readonly expires: number;
}

/** A `DesiredTarget` as it is persisted (JSON): the manifest bytes as base64. */
export type StoredDesired = Omit<DesiredTarget, 'manifest'> & { readonly manifest: string };

/** What the runner reads from the slot store for the machine, so `step` stays pure. */
export interface SlotView {
  readonly snapshot: string | null;
  readonly state: SlotState;
  readonly stored: number;
  readonly size: number | null;
}
export interface StoreView {
  readonly active: SlotName;
  readonly trial: boolean;
  readonly A: SlotView;
  readonly B: SlotView;
}

/** The update being carried out. */
export interface Target {
  readonly snapshot: string;
  /** Slot the snapshot is written to and switched to. */
  readonly slot: SlotName;
  /** Slot that ran when the update began: a failed update goes back to it. */
  readonly from: SlotName;
  readonly size: number;
  readonly sha256: string;
  /** base64 of the manifest COSE bytes, so a crash before the slot was prepared can prepare it again. */
  readonly manifest: string;
  readonly trial: TrialSpec;
  /** Generation of the desired document that asked for this target. */
  readonly generation: number;
}

export interface TrialProgress {
  /** Wall-clock start of the trial window (ms), kept across agent restarts. */
  readonly startedAt: number;
  /** Whether the agent reached the broker since the switch (DESIGN.md: no broker within the window => revert). */
  readonly connected: boolean;
  /** Latest verdict of each local gate (from gate events). */
  readonly gates: Readonly<Partial<Record<GateName, GateVerdict>>>;
  /** The runtime decided the trial passed; the commit waits for the broker if it was not reached yet. */
  readonly passed: boolean;
}

/** The persisted update-machine state. JSON-serialisable (no bytes, no Dates). */
export interface MachineState {
  readonly v: 1;
  readonly phase: Phase;
  /** The last desired generation handled (accepted, or refused for a reason other than replay). */
  readonly generation: number;
  readonly rollout: string | null;
  readonly target: Target | null;
  readonly progress: { readonly bytes: number; readonly total: number } | null;
  readonly trial: TrialProgress | null;
  readonly lastFailure: Failure | null;
  /** A newer desired document that arrived while switching, on trial or reverting: handled when that ends. */
  readonly pending: StoredDesired | null;
  /** Agent starts while in a pre-switch phase: a loop guard (an agent that dies while verifying must not loop). */
  readonly resumes: number;
  /**
   * The transition that led into this state. An agent start publishes it again (at-least-once, like
   * QoS 1): a crash right after the save would otherwise lose it from the outcome ledger.
   */
  readonly entered: { readonly from: Phase; readonly failure: Failure | null } | null;
}

// ---------------------------------------------------------------------------------------------
// Events

/** The agent started with a saved state: the machine maps it to the state to resume in. */
export interface BootEvent {
  readonly type: 'boot';
  readonly now: number;
  readonly store: StoreView;
  /** Agent starts counted during the current trial, including this one (0 outside a trial). */
  readonly agentStarts: number;
  readonly connected: boolean;
}
export interface DesiredEvent {
  readonly type: 'desired';
  readonly now: number;
  readonly desired: DesiredTarget;
  readonly store: StoreView;
  /** `SlotStore.badGeneration(desired.snapshot)`. */
  readonly badGeneration: number | null;
}
/** A desired document that could not be opened (signature, schema, device, expiry): never acted on. */
export interface DesiredInvalidEvent {
  readonly type: 'desired-invalid';
  readonly failure: Failure;
}
export interface ChunkStoredEvent {
  readonly type: 'chunk-stored';
  /** Bytes stored in the target slot after this chunk. */
  readonly stored: number;
}
export interface DownloadCompleteEvent {
  readonly type: 'download-complete';
}
export interface DownloadFailedEvent {
  readonly type: 'download-failed';
  readonly failure: Failure;
}
export interface DigestOkEvent {
  readonly type: 'digest-ok';
}
export interface DigestMismatchEvent {
  readonly type: 'digest-mismatch';
  readonly failure: Failure;
}
/** Asked for by a `continue` effect: moves on from a state whose entry was saved. */
export interface ContinueEvent {
  readonly type: 'continue';
  readonly now: number;
  readonly store: StoreView;
  readonly badGeneration: number | null;
}
export interface SwitchDoneEvent {
  readonly type: 'switch-done';
  readonly now: number;
  readonly connected: boolean;
}
/** The runtime exited unexpectedly during the trial (the supervisor restarts it). */
export interface RuntimeCrashedEvent {
  readonly type: 'runtime-crashed';
  /** Crash restarts counted during the trial, this one included (`SlotStore.countRuntimeStart`): survives agent restarts. */
  readonly crashes: number;
  readonly detail: string;
}
/** The runtime's own trial decision (agent/trial-monitor.ts): null failure = pass. */
export interface TrialDecidedEvent {
  readonly type: 'trial-decided';
  readonly failure: Failure | null;
}
export interface GateEvent {
  readonly type: 'gate';
  readonly gate: GateName;
  readonly verdict: GateVerdict;
  /** A registered code for a failed gate; defaults to the gate's own code. */
  readonly code?: string;
  readonly detail?: string;
}
export interface CrashLoopEvent {
  readonly type: 'crash-loop';
  readonly detail: string;
}
export interface TrialElapsedEvent {
  readonly type: 'trial-elapsed';
}
export interface ConnectivityEvent {
  readonly type: 'connectivity';
  readonly connected: boolean;
}
export interface RevertDoneEvent {
  readonly type: 'revert-done';
}
/** An effect failed (storage write, switch transaction, runtime start). */
export interface FailureEvent {
  readonly type: 'failure';
  readonly failure: Failure;
}

export type MachineEvent =
  | BootEvent
  | DesiredEvent
  | DesiredInvalidEvent
  | ChunkStoredEvent
  | DownloadCompleteEvent
  | DownloadFailedEvent
  | DigestOkEvent
  | DigestMismatchEvent
  | ContinueEvent
  | SwitchDoneEvent
  | RuntimeCrashedEvent
  | TrialDecidedEvent
  | GateEvent
  | CrashLoopEvent
  | TrialElapsedEvent
  | ConnectivityEvent
  | RevertDoneEvent
  | FailureEvent;

export type EventType = MachineEvent['type'];

// ---------------------------------------------------------------------------------------------
// Effects (data; the runner performs them in order after saving the next state)

export type Effect =
  /** `SlotStore.beginDownload`: empty the slot and make it hold the target, nothing stored. */
  | {
      readonly type: 'prepare-slot';
      readonly slot: SlotName;
      readonly snapshot: string;
      readonly manifest: Uint8Array;
      readonly size: number;
      readonly generation: number;
    }
  /** Start (or resume from `offset`) the download into `slot`; results come back as chunk-stored / download-complete / download-failed. */
  | {
      readonly type: 'download';
      readonly slot: SlotName;
      readonly snapshot: string;
      readonly size: number;
      readonly offset: number;
    }
  | { readonly type: 'cancel-download' }
  /** Hash the slot's payload; answers digest-ok or digest-mismatch. */
  | { readonly type: 'verify'; readonly slot: SlotName; readonly size: number; readonly sha256: string }
  /** `SlotStore.markStaged` (idempotent, re-run on resume). */
  | { readonly type: 'stage'; readonly slot: SlotName }
  | { readonly type: 'clean-slot'; readonly slot: SlotName }
  /** `SlotStore.switchTo`, one transaction; answers switch-done. */
  | { readonly type: 'switch'; readonly to: SlotName }
  | { readonly type: 'commit' }
  /** `SlotStore.revert`, one transaction; answers revert-done. */
  | { readonly type: 'revert'; readonly markBad: boolean; readonly generation: number }
  /** Start the snapshot in `slot`; `trial` when it runs on trial (the runtime's own trial monitor gets the spec). */
  | {
      readonly type: 'start-runtime';
      readonly slot: SlotName;
      readonly trial: { readonly spec: TrialSpec; readonly startedAt: number } | null;
    }
  | { readonly type: 'stop-runtime' }
  | { readonly type: 'start-trial-timer'; readonly ms: number }
  | { readonly type: 'cancel-trial-timer' }
  | { readonly type: 'publish-reported' }
  | {
      readonly type: 'publish-event';
      readonly from: Phase;
      readonly to: Phase;
      readonly failure: Failure | null;
      readonly detail?: string;
    }
  /** Feed a `continue` event next (after this batch). */
  | { readonly type: 'continue' }
  | {
      readonly type: 'log';
      readonly level: 'debug' | 'info' | 'warn';
      readonly msg: string;
      readonly code?: ErrorCode;
    };

export type EffectType = Effect['type'];

export interface StepResult {
  readonly next: MachineState;
  readonly effects: readonly Effect[];
}

/**
 * Record types the manager's domain core hands to its callers (HTTP API, CLI, rollout engine).
 * Everything here is plain JSON-able data except `Uint8Array` fields (printed as hex by the CLI).
 * Times are milliseconds since the epoch from the service's Clock.
 */
import type {
  HealthMessage,
  ReportedMessage,
  SlotName,
  SlotState,
  TelemetryMessage,
  TrialSpec,
  UpdatePhase,
} from '../protocol/messages.js';

/** Injectable time source (tests pass a fake one). */
export interface Clock {
  now(): number;
}
export const systemClock: Clock = { now: () => Date.now() };

// ---------------------------------------------------------------------------------------------
// devices

export interface DeviceRecord {
  readonly id: string;
  readonly site: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly hardware: string;
  readonly adapters: readonly string[];
  readonly created: number;
  /** Set when the device was removed; removed devices keep their history but cannot connect. */
  readonly removed: number | null;
}

/** One slot as the device reports it. */
export interface SlotReport {
  readonly snapshot: string | null;
  readonly state: SlotState;
}

/** Connection state from the retained `state` topic; `unknown` = never heard from. */
export type ConnectionState = 'online' | 'lost' | 'unknown';

export interface DeviceSummary extends DeviceRecord {
  readonly state: ConnectionState;
  readonly session: number | null;
  /** Last time any message from the device was received. */
  readonly lastSeen: number | null;
  /** Snapshot in the device's active slot (from `reported`). */
  readonly activeSnapshot: string | null;
  /** Target snapshot of the stored desired document. */
  readonly desiredSnapshot: string | null;
  readonly phase: UpdatePhase | null;
  /** True when the device has at least one open drift entry. */
  readonly drifting: boolean;
}

/** Arrival statistics the manager computes itself per session (DESIGN.md: per-session `seq`). */
export interface ArrivalStats {
  readonly session: number | null;
  readonly lastSeq: number | null;
  /** Largest gap between two consecutive arrivals in the current session, seconds. */
  readonly maxGapS: number;
  /** Seconds since the last arrival (at the time of the query). */
  readonly sinceLastS: number | null;
  /** Sequence numbers skipped in the current session (drops seen by the manager). */
  readonly missing: number;
  /** Messages received in the current session. */
  readonly received: number;
}

export interface DeviceDetail extends DeviceSummary {
  readonly activeSlot: SlotName | null;
  readonly slots: { readonly A: SlotReport; readonly B: SlotReport } | null;
  readonly reported: ReportedMessage | null;
  readonly reportedAt: number | null;
  readonly health: HealthMessage | null;
  readonly healthAt: number | null;
  readonly telemetry: TelemetryMessage | null;
  readonly telemetryAt: number | null;
  readonly arrival: { readonly health: ArrivalStats; readonly telemetry: ArrivalStats };
  readonly desired: DesiredRecord | null;
  readonly drift: readonly DriftRecord[];
}

export interface AddDeviceInput {
  readonly id: string;
  readonly site: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly hardware: string;
  readonly adapters?: readonly string[];
}

/** The brief's "Agent config file" as an object (the CLI writes it as YAML). */
export interface AgentConfig {
  device_id: string;
  site: string;
  broker: { url: string; username: string; password: string; ca?: string; prefix: string };
  keys: { release: string[]; manager: string[] };
  data_dir: string;
  device: { hardware: string; adapters: string[] };
  trial: { window_s: number };
  telemetry_interval_s: number;
}

export interface AddDeviceResult {
  readonly device: DeviceRecord;
  /** The device secret, returned ONCE; the store keeps only a salted scrypt hash. */
  readonly secret: string;
  readonly config: AgentConfig;
}

export interface DeviceFilter {
  readonly site?: string;
  /** Every pair must match (AND). */
  readonly labels?: Readonly<Record<string, string>>;
  readonly state?: ConnectionState;
  readonly drifting?: boolean;
  readonly includeRemoved?: boolean;
}

/** One page of a device list (keyset on the device id; GET /api/v1/devices). */
export interface DevicePage {
  readonly devices: DeviceSummary[];
  /** The last id of this page when more devices match after it, else null. */
  readonly next: string | null;
}

// ---------------------------------------------------------------------------------------------
// snapshots

export interface SnapshotRecord {
  /** Content address: sha256 hex of the signed manifest bytes. */
  readonly id: string;
  readonly name: string;
  readonly version: string;
  readonly seq: number;
  readonly size: number;
  /** Payload SHA-256, hex. */
  readonly sha256: string;
  /** Manifest `created`. */
  readonly created: number;
  /** When the manager first stored it. */
  readonly pushed: number;
  /** Key id of the release key that signed it. */
  readonly kid: string;
  readonly knownGood: boolean;
  /** Non-null when flagged (by an operator or a failed rollout): the reason. */
  readonly flagged: string | null;
  /** The manifest as JSON (sha256 as hex). */
  readonly manifest: Readonly<Record<string, unknown>>;
}

export interface PushResult {
  readonly snapshot: SnapshotRecord;
  /** false when the same bundle id was already stored (duplicate push is a no-op). */
  readonly created: boolean;
}

// ---------------------------------------------------------------------------------------------
// desired state

export interface AssignOptions {
  readonly rollout?: string | null;
  readonly stage?: string | null;
  /** Merged over the service's default trial spec. */
  readonly trial?: Partial<TrialSpec>;
  /** Lifetime of the signed document; default the service's `desiredTtlMs`. */
  readonly ttlMs?: number;
  /**
   * The device's previous / baseline snapshot, which stays fetchable for it (a rollback target it
   * may need to re-download). Default: the target of the desired document this one replaces.
   */
  readonly baseline?: string | null;
}

export interface DesiredRecord {
  readonly device: string;
  readonly snapshot: string;
  readonly generation: number;
  readonly rollout: string | null;
  readonly stage: string | null;
  readonly trial: TrialSpec;
  readonly issued: number;
  readonly expires: number;
  /** When the target was first assigned (re-signing keeps it; see docs/manager.md). */
  readonly assigned: number;
  readonly baseline: string | null;
  /** The signed COSE_Sign1 document as published. */
  readonly bytes: Uint8Array;
}

export interface AssignResult {
  readonly assigned: readonly DesiredRecord[];
}

// ---------------------------------------------------------------------------------------------
// drift, events, stats

export type DriftKind =
  /** Active snapshot differs from the desired target after the convergence deadline. */
  | 'unconverged'
  /** The desired target is present but not in the active slot that was reported. */
  | 'unexpected_slot'
  /** Running a snapshot the manager never assigned to this device. */
  | 'unassigned_snapshot'
  /** The device reports a generation newer than any the manager issued (restored store?). */
  | 'generation_ahead';

export interface DriftRecord {
  readonly device: string;
  readonly kind: DriftKind;
  readonly since: number;
  readonly detail: string;
}

export type EventKind =
  /** An update transition from the device's `events` topic (outcome ledger input). */
  | 'update'
  /** Device connection state change. */
  | 'connection'
  /** Manager-side action: assign, re-sign, push, device add/remove. */
  | 'manager'
  /** Drift opened or cleared. */
  | 'drift'
  /** Chunk fetch refused. */
  | 'fetch_refused';

export interface EventRecord {
  readonly id: number;
  /** Receive time at the manager. */
  readonly ts: number;
  readonly device: string | null;
  readonly kind: EventKind;
  readonly rollout: string | null;
  readonly snapshot: string | null;
  /** The decoded message (for `update`) or a small detail object. */
  readonly data: Readonly<Record<string, unknown>>;
}

export interface EventFilter {
  readonly device?: string;
  readonly kind?: EventKind;
  readonly rollout?: string;
  readonly snapshot?: string;
  /** Events with ts >= since. */
  readonly since?: number;
  /** Events with id > afterId (for paging / tailing). */
  readonly afterId?: number;
  /** Default 100, max 10,000. Newest last. */
  readonly limit?: number;
}

export interface FleetStats {
  readonly devices: {
    readonly total: number;
    readonly online: number;
    readonly lost: number;
    readonly unknown: number;
  };
  readonly snapshots: number;
  readonly drifting: number;
  readonly ingest: {
    readonly received: number;
    /** Invalid messages by error code (never crash, counted). */
    readonly rejected: Readonly<Record<string, number>>;
    readonly flushes: number;
    readonly pending: number;
  };
  readonly fetch: {
    readonly served: number;
    readonly bytes: number;
    readonly refused: Readonly<Record<string, number>>;
  };
  readonly mqtt: { readonly connected: boolean };
}

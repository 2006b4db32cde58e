/**
 * The agent's A/B slot store (DESIGN.md "Agent update state machine"). Two implementations pass
 * ONE contract suite (test/unit/slot-store-contract.ts, MQTT.js store.ts / aedes-persistence
 * style): SQLite on the gateway (agent/sqlite-slot-store.ts) and an in-memory one for the
 * simulator, which cannot afford three files per device (agent/memory-slot-store.ts).
 *
 * Model, after a bootloader environment (Mender's `upgrade_available` + `bootcount`):
 * - two slots, A and B, each holding one snapshot: its signed manifest, its payload (stored as an
 *   ordered run of chunks, always a prefix of the payload, so a restart resumes from `stored`),
 *   and a state (`SlotState` in protocol/messages.ts);
 * - a boot record: the active slot, the previous one, the trial flag and its start counters, the
 *   last desired generation handled, and the persisted update-machine state.
 *
 * Every mutating method is ONE transaction: it either happens completely or not at all (a thrown
 * error leaves the store exactly as it was). Misuse (writing the active slot, a chunk at the wrong
 * offset, a switch to a slot that is not verified) throws a `FleetgateError` with a registered
 * code and changes nothing. Reads return copies; mutating them does not touch the store.
 */
import type { SlotName, SlotState } from '../protocol/messages.js';
import type { MachineState, StoreView } from './update-types.js';

export const SLOT_NAMES: readonly SlotName[] = ['A', 'B'];

/** The slot that is not `s`. */
export function otherSlot(s: SlotName): SlotName {
  return s === 'A' ? 'B' : 'A';
}

/**
 * What a slot holds. Slot states:
 * `empty` nothing; `downloading` a payload prefix is being written; `staged` the whole payload is
 * stored and its digest verified, ready to switch to; `active` the slot the device runs;
 * `good` a slot that ran committed before and is kept as the instant rollback target;
 * `bad` failed its trial on this device (its bytes stay, see `badGeneration`).
 */
export interface SlotInfo {
  readonly name: SlotName;
  /** Snapshot id (sha256 hex of the signed manifest bytes), null when empty. */
  readonly snapshot: string | null;
  /** The COSE_Sign1 manifest bytes exactly as received, null when empty. */
  readonly manifest: Uint8Array | null;
  readonly state: SlotState;
  /** The signed payload size, null when empty. */
  readonly size: number | null;
  /** Payload bytes stored so far: always a prefix of the payload; `stored === size` once complete. */
  readonly stored: number;
  /** Generation of the desired document that wrote this slot, null when empty. */
  readonly generation: number | null;
}

export interface BootRecord {
  /** The slot the device runs (or would run, when it holds nothing yet). A fresh store: `A`. */
  readonly active: SlotName;
  /** The slot that was active before the last switch, null before the first switch. */
  readonly previous: SlotName | null;
  /** True from a switch until `commit` or `revert`: the active slot is on trial. */
  readonly trial: boolean;
  /** Agent starts counted during the current trial (`countAgentStart`). */
  readonly agentStarts: number;
  /** Runtime starts counted during the current trial (`countRuntimeStart`). */
  readonly runtimeStarts: number;
  /** The last desired generation handled (from the saved machine state); 0 on a fresh store. */
  readonly generation: number;
  /** The persisted update-machine state, null on a fresh store. */
  readonly machine: MachineState | null;
}

/** What `beginDownload` needs to know about the snapshot that goes into a slot. */
export interface SlotTarget {
  readonly snapshot: string;
  readonly manifest: Uint8Array;
  readonly size: number;
  readonly generation: number;
}

export interface SlotStore {
  /** Reads one slot (a copy). */
  slot(name: SlotName): SlotInfo;

  /** Reads the boot record (a copy). */
  boot(): BootRecord;

  /**
   * Empties `slot` and makes it hold `target` in state `downloading` with no bytes stored.
   * Throws FG_SLOT_ACTIVE if `slot` is the active slot and holds a snapshot (the running slot is
   * never overwritten), FG_SLOT_TRIAL during a trial (the other slot is the rollback target).
   */
  beginDownload(slot: SlotName, target: SlotTarget): void;

  /**
   * Appends `bytes` at `offset` to a `downloading` slot and returns the new `stored` count. The
   * chunk and the new count are never apart (one transaction, or a count that is the payload
   * file's length), so after a crash `stored` is exactly the number of bytes that survive.
   * Throws FG_CHUNK_OFFSET unless `offset === stored`, FG_PAYLOAD_SIZE_MISMATCH if the chunk would
   * pass the signed size ("never accepts more bytes than the signed size"), FG_SLOT_STATE if the
   * slot is not `downloading`.
   */
  appendChunk(slot: SlotName, offset: number, bytes: Uint8Array): number;

  /** The stored payload bytes of `slot`, in order (a copy; empty when nothing is stored). */
  readPayload(slot: SlotName): Uint8Array;

  /**
   * The stored payload of `slot` piece by piece, in order: hashing a large payload without one big
   * buffer. The pieces are not empty; their sizes need not be those of the appended chunks.
   */
  chunks(slot: SlotName): Iterable<Uint8Array>;

  /**
   * Like `chunks`, but the pieces may be the store's own buffers, not copies: for a caller that only
   * reads them before the store's next write (the runner's digest check at every rollback would
   * otherwise copy the whole payload for nothing).
   */
  chunkViews(slot: SlotName): Iterable<Uint8Array>;

  /**
   * What the update runner reads on every event and report: the active slot, the trial flag and
   * each slot's snapshot, state and sizes, without the manifest copies and the machine-state parse
   * that `slot()` and `boot()` make.
   */
  storeView(): StoreView;

  /** `boot().agentStarts` without parsing the saved machine state. */
  agentStarts(): number;

  /**
   * Marks a complete slot `staged` (its digest was verified by the caller). Allowed from
   * `downloading`, `staged`, `good` and `bad` (a rollback or an explicit retry re-stages bytes the
   * slot already holds). Throws FG_SLOT_STATE if `stored !== size` or the slot is empty or active.
   */
  markStaged(slot: SlotName): void;

  /**
   * Empties `slot` (snapshot, manifest and chunks): no half-written slot survives a failed update.
   * Throws FG_SLOT_ACTIVE for the active slot when it holds a snapshot, FG_SLOT_TRIAL for the
   * previous slot during a trial. Clearing an empty slot is a no-op.
   */
  clearSlot(slot: SlotName): void;

  /**
   * THE switch, one transaction: `previous := active`, `active := to`; `to` becomes `active`,
   * the old active slot becomes `good` if it held a snapshot; `trial := true`; both start counters
   * reset to 0. Throws FG_SLOT_STATE unless `to` is the inactive slot, complete and `staged`;
   * FG_SLOT_TRIAL during a trial.
   */
  switchTo(to: SlotName): void;

  /** Ends the trial: `trial := false`, counters reset. A no-op when not in a trial (idempotent for resume). */
  commit(): void;

  /**
   * THE revert, one transaction: `active := previous`, `previous := ` the slot on trial;
   * the restored slot becomes `active`; the slot on trial becomes `bad` (and is remembered as bad
   * for `generation`, see `badGeneration`) when `markBad`, else `staged` (a rollback asked by a
   * newer desired generation: the bytes are fine); `trial := false`, counters reset.
   * Throws FG_SLOT_TRIAL when not in a trial.
   */
  revert(opts: { markBad: boolean; generation: number }): void;

  /** During a trial, counts one agent start and returns the new count; outside a trial returns 0 and writes nothing. */
  countAgentStart(): number;

  /** During a trial, counts one runtime start and returns the new count; outside a trial returns 0 and writes nothing. */
  countRuntimeStart(): number;

  /**
   * The highest generation at which `snapshot` was marked bad on this device, or null. A bad
   * snapshot is not retried unless a newer generation asks for it.
   */
  badGeneration(snapshot: string): number | null;

  /**
   * Saves the update-machine state (and with it the last handled generation) before its effects
   * run. Throws FG_GENERATION_REGRESSED if `state.generation` is lower than the saved one: the
   * last handled generation never goes back (replay protection, DESIGN.md "Topics").
   */
  saveMachine(state: MachineState): void;

  /** Releases the backing resources. Further calls throw. */
  close(): void;
}

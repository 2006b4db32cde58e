/**
 * In-memory SlotStore for the simulator (DESIGN.md "The parts": 10,000 simulated devices cannot
 * hold three SQLite files each under the 20,000 open-file limit). It passes the same contract suite
 * as the SQLite store (test/unit/slot-store-contract.ts).
 *
 * The rows live in a `MemorySlotBacking` that outlives a store object: a simulated agent that
 * "crashes" drops its runner and store and opens a new store on the same backing, as a real agent
 * reopens its SQLite file. Transactions keep an undo log: a write that throws half-way undoes the
 * writes before it, so a failed operation leaves the backing unchanged.
 */
import type { SlotName } from '../protocol/messages.js';
import { FleetgateError } from '../protocol/result.js';
import {
  type BootRow,
  emptySlot,
  FRESH_BOOT,
  planAppendChunk,
  planBeginDownload,
  planClearSlot,
  planCommit,
  planCount,
  planMarkStaged,
  planRevert,
  planSaveMachine,
  planSwitch,
  type StoreRows,
  slotView,
  toBootRecord,
  type Write,
} from './slot-rules.js';
import type { BootRecord, SlotInfo, SlotStore, SlotTarget } from './slot-store.js';
import type { MachineState, StoreView } from './update-types.js';

/** The rows of one simulated device. Create with `createMemoryBacking()`. */
export interface MemorySlotBacking {
  slots: Record<SlotName, SlotInfo>;
  chunks: Record<SlotName, Uint8Array[]>;
  boot: BootRow;
  bad: Map<string, number>;
}

export function createMemoryBacking(): MemorySlotBacking {
  return {
    slots: { A: emptySlot('A'), B: emptySlot('B') },
    chunks: { A: [], B: [] },
    boot: { ...FRESH_BOOT },
    bad: new Map(),
  };
}

/** Which kind of row a write touches: the unit a fault is injected on (see `failWrites`). */
export type MemoryTable = 'slot' | 'chunk' | 'boot' | 'bad';

export interface MemorySlotStoreOptions {
  backing?: MemorySlotBacking;
}

function copySlot(s: SlotInfo): SlotInfo {
  return { ...s, manifest: s.manifest === null ? null : Uint8Array.from(s.manifest) };
}

export class MemorySlotStore implements SlotStore {
  readonly backing: MemorySlotBacking;
  private closed = false;
  private readonly faults = new Set<MemoryTable>();

  constructor(opts: MemorySlotStoreOptions = {}) {
    this.backing = opts.backing ?? createMemoryBacking();
  }

  /** Test hook: every later write to `table` throws, as a full disk would. */
  failWrites(table: MemoryTable): void {
    this.faults.add(table);
  }

  /** Test hook: undoes `failWrites`. */
  healWrites(): void {
    this.faults.clear();
  }

  slot(name: SlotName): SlotInfo {
    this.open();
    return copySlot(this.backing.slots[name]);
  }

  boot(): BootRecord {
    this.open();
    return toBootRecord(this.backing.boot);
  }

  /** The update runner's view, read from the rows: no manifest copies, no machine-state parse. */
  storeView(): StoreView {
    this.open();
    const { slots, boot } = this.backing;
    return { active: boot.active, trial: boot.trial, A: slotView(slots.A), B: slotView(slots.B) };
  }

  beginDownload(slot: SlotName, target: SlotTarget): void {
    this.apply(planBeginDownload(this.rows(), slot, target));
  }

  appendChunk(slot: SlotName, offset: number, bytes: Uint8Array): number {
    this.apply(planAppendChunk(this.rows(), slot, offset, bytes));
    return this.backing.slots[slot].stored;
  }

  readPayload(slot: SlotName): Uint8Array {
    this.open();
    // Buffer.concat already copies into a new buffer: viewed, not copied a second time.
    const b = Buffer.concat(this.backing.chunks[slot]);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }

  *chunks(slot: SlotName): Iterable<Uint8Array> {
    this.open();
    for (const c of [...this.backing.chunks[slot]]) yield c.slice();
  }

  agentStarts(): number {
    this.open();
    return this.backing.boot.agentStarts;
  }

  /** The stored chunks themselves (the caller only reads them); the list is taken at the call. */
  *chunkViews(slot: SlotName): Iterable<Uint8Array> {
    this.open();
    yield* this.backing.chunks[slot].slice();
  }

  markStaged(slot: SlotName): void {
    this.apply(planMarkStaged(this.rows(), slot));
  }

  clearSlot(slot: SlotName): void {
    this.apply(planClearSlot(this.rows(), slot));
  }

  switchTo(to: SlotName): void {
    this.apply(planSwitch(this.rows(), to));
  }

  commit(): void {
    this.apply(planCommit(this.rows()));
  }

  revert(opts: { markBad: boolean; generation: number }): void {
    this.apply(planRevert(this.rows(), opts));
  }

  countAgentStart(): number {
    const { writes, count } = planCount(this.rows(), 'agentStarts');
    this.apply(writes);
    return count;
  }

  countRuntimeStart(): number {
    const { writes, count } = planCount(this.rows(), 'runtimeStarts');
    this.apply(writes);
    return count;
  }

  badGeneration(snapshot: string): number | null {
    this.open();
    return this.backing.bad.get(snapshot) ?? null;
  }

  saveMachine(state: MachineState): void {
    this.apply(planSaveMachine(this.rows(), state));
  }

  close(): void {
    this.closed = true;
  }

  private open(): void {
    if (this.closed) throw FleetgateError.of('FG_STORE_CLOSED');
  }

  private rows(): StoreRows {
    this.open();
    return { slots: this.backing.slots, boot: this.backing.boot };
  }

  /** Applies the writes as one transaction: on any throw, the undo log restores what was written. */
  private apply(writes: readonly Write[]): void {
    const b = this.backing;
    const undo: (() => void)[] = [];
    try {
      for (const w of writes) {
        const table: MemoryTable = w.kind === 'clear-chunks' ? 'chunk' : w.kind;
        if (this.faults.has(table)) throw new Error(`injected fault writing ${table}`);
        switch (w.kind) {
          case 'slot': {
            const old = b.slots[w.row.name];
            undo.push(() => {
              b.slots[w.row.name] = old;
            });
            // A manifest the store already holds is shared (rows are replaced, never written in
            // place): a chunk's row update must not copy it again; a caller's array is copied.
            b.slots[w.row.name] = w.row.manifest === old.manifest ? { ...w.row } : copySlot(w.row);
            break;
          }
          case 'chunk': {
            const list = b.chunks[w.slot];
            undo.push(() => {
              list.pop();
            });
            list.push(Uint8Array.from(w.bytes)); // a copy: the caller's buffer may be reused
            break;
          }
          case 'clear-chunks': {
            const old = b.chunks[w.slot];
            undo.push(() => {
              b.chunks[w.slot] = old;
            });
            b.chunks[w.slot] = [];
            break;
          }
          case 'boot': {
            const old = b.boot;
            undo.push(() => {
              b.boot = old;
            });
            b.boot = { ...w.row };
            break;
          }
          case 'bad': {
            const old = b.bad.get(w.snapshot);
            undo.push(() => {
              if (old === undefined) b.bad.delete(w.snapshot);
              else b.bad.set(w.snapshot, old);
            });
            b.bad.set(w.snapshot, Math.max(old ?? 0, w.generation));
            break;
          }
        }
      }
    } catch (e) {
      for (const u of undo.reverse()) u();
      throw FleetgateError.of('FG_STORAGE_WRITE', e instanceof Error ? e.message : String(e));
    }
  }
}

/**
 * The rules of the slot store, shared by every implementation: each mutating operation is planned
 * here, purely, as a list of row writes from the rows it reads; an implementation only applies the
 * list in one transaction. So the SQLite and the in-memory store cannot disagree on a rule, and a
 * refused operation (a thrown FleetgateError) has written nothing.
 */

import type { SlotName } from '../protocol/messages.js';
import { FleetgateError } from '../protocol/result.js';
import type { BootRecord, SlotInfo, SlotTarget } from './slot-store.js';
import type { MachineState, SlotView } from './update-types.js';

/** The boot record as stored: the machine state as its JSON text. */
export type BootRow = Omit<BootRecord, 'machine'> & { readonly machine: string | null };

export interface StoreRows {
  readonly slots: Readonly<Record<SlotName, SlotInfo>>;
  readonly boot: BootRow;
}

export type Write =
  | { readonly kind: 'slot'; readonly row: SlotInfo }
  | { readonly kind: 'chunk'; readonly slot: SlotName; readonly offset: number; readonly bytes: Uint8Array }
  | { readonly kind: 'clear-chunks'; readonly slot: SlotName }
  | { readonly kind: 'boot'; readonly row: BootRow }
  | { readonly kind: 'bad'; readonly snapshot: string; readonly generation: number };

export function emptySlot(name: SlotName): SlotInfo {
  return { name, snapshot: null, manifest: null, state: 'empty', size: null, stored: 0, generation: null };
}

/** A slot as the update runner's view holds it (`SlotStore.storeView`). */
export function slotView(s: SlotInfo): SlotView {
  return { snapshot: s.snapshot, state: s.state, stored: s.stored, size: s.size };
}

export const FRESH_BOOT: BootRow = {
  active: 'A',
  previous: null,
  trial: false,
  agentStarts: 0,
  runtimeStarts: 0,
  generation: 0,
  machine: null,
};

const SNAPSHOT_RE = /^[0-9a-f]{64}$/;

function isCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/** The active slot holds the running snapshot: never overwritten or emptied. */
function guardNotActive(rows: StoreRows, slot: SlotName, what: string): void {
  if (rows.boot.active === slot && rows.slots[slot].snapshot !== null) {
    throw FleetgateError.of('FG_SLOT_ACTIVE', `${what} slot ${slot}`);
  }
}

export function planBeginDownload(rows: StoreRows, slot: SlotName, t: SlotTarget): Write[] {
  if (!SNAPSHOT_RE.test(t.snapshot)) throw FleetgateError.of('FG_SLOT_STATE', 'snapshot id is not 64 hex characters');
  if (!isCount(t.size) || !isCount(t.generation))
    throw FleetgateError.of('FG_SLOT_STATE', 'size and generation are counts');
  // During a trial the inactive slot is the rollback target: it stays until commit or revert.
  if (rows.boot.trial) throw FleetgateError.of('FG_SLOT_TRIAL', `cannot download into ${slot} during a trial`);
  guardNotActive(rows, slot, 'download into');
  return [
    { kind: 'clear-chunks', slot },
    {
      kind: 'slot',
      row: {
        name: slot,
        snapshot: t.snapshot,
        manifest: Uint8Array.from(t.manifest),
        state: 'downloading',
        size: t.size,
        stored: 0,
        generation: t.generation,
      },
    },
  ];
}

export function planAppendChunk(rows: StoreRows, slot: SlotName, offset: number, bytes: Uint8Array): Write[] {
  const s = rows.slots[slot];
  if (s.state !== 'downloading' || s.size === null) {
    throw FleetgateError.of('FG_SLOT_STATE', `slot ${slot} is ${s.state}, not downloading`);
  }
  if (offset !== s.stored) {
    throw FleetgateError.of('FG_CHUNK_OFFSET', `slot ${slot} holds ${s.stored} bytes, chunk starts at ${offset}`);
  }
  // DESIGN.md "Snapshot bundle": a device never accepts more bytes than the signed size.
  if (s.stored + bytes.byteLength > s.size) {
    throw FleetgateError.of(
      'FG_PAYLOAD_SIZE_MISMATCH',
      `chunk ends at ${offset + bytes.byteLength}, size is ${s.size}`,
    );
  }
  if (bytes.byteLength === 0) return [];
  return [
    // Not copied here: SQLite copies as it binds; the memory store copies what it keeps.
    { kind: 'chunk', slot, offset, bytes },
    { kind: 'slot', row: { ...s, stored: s.stored + bytes.byteLength } },
  ];
}

export function planMarkStaged(rows: StoreRows, slot: SlotName): Write[] {
  const s = rows.slots[slot];
  const from = ['downloading', 'staged', 'good', 'bad'];
  if (!from.includes(s.state) || s.snapshot === null) {
    throw FleetgateError.of('FG_SLOT_STATE', `slot ${slot} is ${s.state}; only a complete inactive slot is staged`);
  }
  if (s.stored !== s.size)
    throw FleetgateError.of('FG_SLOT_STATE', `slot ${slot} holds ${s.stored} of ${s.size} bytes`);
  if (rows.boot.active === slot) throw FleetgateError.of('FG_SLOT_ACTIVE', `stage slot ${slot}`);
  return s.state === 'staged' ? [] : [{ kind: 'slot', row: { ...s, state: 'staged' } }];
}

export function planClearSlot(rows: StoreRows, slot: SlotName): Write[] {
  const s = rows.slots[slot];
  if (s.snapshot === null && s.state === 'empty' && s.stored === 0) return [];
  guardNotActive(rows, slot, 'clear');
  if (rows.boot.trial && rows.boot.previous === slot) {
    throw FleetgateError.of('FG_SLOT_TRIAL', `slot ${slot} is the rollback target of the trial`);
  }
  return [
    { kind: 'clear-chunks', slot },
    { kind: 'slot', row: emptySlot(slot) },
  ];
}

export function planSwitch(rows: StoreRows, to: SlotName): Write[] {
  const { boot } = rows;
  if (boot.trial) throw FleetgateError.of('FG_SLOT_TRIAL', 'a trial is running; commit or revert first');
  if (boot.active === to) throw FleetgateError.of('FG_SLOT_STATE', `slot ${to} is already active`);
  const target = rows.slots[to];
  if (target.state !== 'staged' || target.stored !== target.size) {
    throw FleetgateError.of('FG_SLOT_STATE', `slot ${to} is ${target.state}; only a staged slot is switched to`);
  }
  const old = rows.slots[boot.active];
  const writes: Write[] = [{ kind: 'slot', row: { ...target, state: 'active' } }];
  if (old.snapshot !== null) writes.push({ kind: 'slot', row: { ...old, state: 'good' } });
  writes.push({
    kind: 'boot',
    row: { ...boot, active: to, previous: boot.active, trial: true, agentStarts: 0, runtimeStarts: 0 },
  });
  return writes;
}

export function planCommit(rows: StoreRows): Write[] {
  if (!rows.boot.trial) return [];
  return [{ kind: 'boot', row: { ...rows.boot, trial: false, agentStarts: 0, runtimeStarts: 0 } }];
}

export function planRevert(rows: StoreRows, opts: { markBad: boolean; generation: number }): Write[] {
  const { boot } = rows;
  if (!boot.trial || boot.previous === null) throw FleetgateError.of('FG_SLOT_TRIAL', 'no trial to revert');
  if (!isCount(opts.generation)) throw FleetgateError.of('FG_SLOT_STATE', 'generation is a count');
  const failed = rows.slots[boot.active];
  const restored = rows.slots[boot.previous];
  const writes: Write[] = [
    { kind: 'slot', row: { ...failed, state: opts.markBad ? 'bad' : 'staged' } },
    { kind: 'slot', row: { ...restored, state: restored.snapshot === null ? 'empty' : 'active' } },
  ];
  if (opts.markBad && failed.snapshot !== null) {
    writes.push({ kind: 'bad', snapshot: failed.snapshot, generation: opts.generation });
  }
  writes.push({
    kind: 'boot',
    row: { ...boot, active: boot.previous, previous: boot.active, trial: false, agentStarts: 0, runtimeStarts: 0 },
  });
  return writes;
}

export function planCount(rows: StoreRows, which: 'agentStarts' | 'runtimeStarts'): { writes: Write[]; count: number } {
  if (!rows.boot.trial) return { writes: [], count: 0 };
  const count = rows.boot[which] + 1;
  return { writes: [{ kind: 'boot', row: { ...rows.boot, [which]: count } }], count };
}

export function planSaveMachine(rows: StoreRows, state: MachineState): Write[] {
  if (!isCount(state.generation)) throw FleetgateError.of('FG_STORE_CORRUPT', 'machine generation is not a count');
  if (state.generation < rows.boot.generation) {
    throw FleetgateError.of('FG_GENERATION_REGRESSED', `${state.generation} < ${rows.boot.generation}`);
  }
  return [{ kind: 'boot', row: { ...rows.boot, generation: state.generation, machine: JSON.stringify(state) } }];
}

/** Parses the stored machine JSON; a record that does not parse is corruption, not a fresh start. */
export function parseMachine(text: string | null): MachineState | null {
  if (text === null) return null;
  try {
    const v = JSON.parse(text) as MachineState;
    if (typeof v !== 'object' || v === null || v.v !== 1 || typeof v.phase !== 'string') throw new Error('shape');
    return v;
  } catch (e) {
    throw FleetgateError.of('FG_STORE_CORRUPT', `machine state: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export function toBootRecord(row: BootRow): BootRecord {
  return { ...row, machine: parseMachine(row.machine) };
}

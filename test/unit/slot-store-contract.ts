/**
 * THE SlotStore contract (agent/slot-store.ts), run against every implementation
 * (MQTT.js test/node/abstract_store.ts, aedes-persistence abstract.js style): the SQLite store on
 * real files (slot-store-sqlite.test.ts) and the in-memory one (slot-store-memory.test.ts).
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SlotStore } from '../../agent/slot-store.js';
import type { MachineState } from '../../agent/update-types.js';
import type { SlotName } from '../../protocol/messages.js';
import { FleetgateError } from '../../protocol/result.js';

export type FaultTable = 'slot' | 'chunk' | 'boot' | 'bad';

export interface ContractSubject {
  /** The store under test; `reopen` replaces it. */
  store: SlotStore;
  /** Closes the store and opens a new one on the same backing (the same file, the same memory rows). */
  reopen(): SlotStore;
  /** From now on, every write touching `table` fails, as on a full or failing disk. */
  failWrites(table: FaultTable): void;
  healWrites(): void;
  /** `PRAGMA integrity_check` or equivalent, when the backing has one. */
  integrityCheck?: () => string;
  cleanup(): void;
}

export type ContractFactory = () => ContractSubject;

export function snapshotId(label: string): string {
  return createHash('sha256').update(label).digest('hex');
}

const X = snapshotId('x');
const Y = snapshotId('y');
const Z = snapshotId('z');
export const MANIFEST = Uint8Array.from([0xd2, 0x84, 1, 2, 3]);

export function bytes(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
}

export function machine(generation: number, phase: MachineState['phase'] = 'idle'): MachineState {
  return {
    v: 1,
    phase,
    generation,
    rollout: null,
    target: null,
    progress: null,
    trial: null,
    lastFailure: null,
    pending: null,
    resumes: 0,
    entered: null,
  };
}

/** Everything observable, in a form `toEqual` compares. */
function dump(s: SlotStore): unknown {
  const hex = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString('hex'));
  const slot = (n: SlotName) => {
    const info = s.slot(n);
    return { ...info, manifest: hex(info.manifest), payload: hex(s.readPayload(n)) };
  };
  return {
    A: slot('A'),
    B: slot('B'),
    boot: s.boot(),
    bad: [X, Y, Z].map((id) => s.badGeneration(id)),
  };
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof FleetgateError) return e.code;
    return `non-FleetgateError: ${String(e)}`;
  }
  return 'no error';
}

/** Downloads `payload` into `slot` in chunks of `chunk` bytes and stages it. */
function install(s: SlotStore, slot: SlotName, snapshot: string, payload: Uint8Array, generation: number, chunk = 5) {
  s.beginDownload(slot, { snapshot, manifest: MANIFEST, size: payload.byteLength, generation });
  for (let off = 0; off < payload.byteLength; off += chunk)
    s.appendChunk(slot, off, payload.subarray(off, off + chunk));
  s.markStaged(slot);
}

export function slotStoreContract(name: string, factory: ContractFactory): void {
  describe(`SlotStore contract: ${name}`, () => {
    let subject: ContractSubject;
    let s: SlotStore;
    beforeEach(() => {
      subject = factory();
      s = subject.store;
    });
    afterEach(() => {
      subject.cleanup();
    });
    const reopen = () => {
      s = subject.reopen();
      return s;
    };

    it('starts with two empty slots and a fresh boot record', () => {
      for (const n of ['A', 'B'] as const) {
        expect(s.slot(n)).toEqual({
          name: n,
          snapshot: null,
          manifest: null,
          state: 'empty',
          size: null,
          stored: 0,
          generation: null,
        });
        expect(s.readPayload(n).byteLength).toBe(0);
      }
      expect(s.boot()).toEqual({
        active: 'A',
        previous: null,
        trial: false,
        agentStarts: 0,
        runtimeStarts: 0,
        generation: 0,
        machine: null,
      });
      expect(s.badGeneration(X)).toBeNull();
    });

    describe('beginDownload / appendChunk / readPayload / chunks', () => {
      it('stores chunks in order and reports the stored prefix', () => {
        const payload = bytes(23, 1);
        s.beginDownload('B', { snapshot: X, manifest: MANIFEST, size: 23, generation: 7 });
        expect(s.slot('B')).toMatchObject({ snapshot: X, state: 'downloading', size: 23, stored: 0, generation: 7 });
        expect(s.slot('B').manifest).toEqual(MANIFEST);
        expect(s.appendChunk('B', 0, payload.subarray(0, 10))).toBe(10);
        expect(s.appendChunk('B', 10, payload.subarray(10, 20))).toBe(20);
        expect(s.slot('B').stored).toBe(20);
        expect(s.readPayload('B')).toEqual(payload.subarray(0, 20));
        expect(s.appendChunk('B', 20, payload.subarray(20))).toBe(23);
        expect(s.readPayload('B')).toEqual(payload);
        // Pieces in order; their sizes are the store's (the SQLite store reads its file in pieces).
        expect([...s.chunks('B')].every((c) => c.byteLength > 0)).toBe(true);
        expect(Buffer.concat([...s.chunks('B')])).toEqual(Buffer.from(payload));
      });

      it('refuses a chunk that does not continue the prefix, and changes nothing', () => {
        s.beginDownload('B', { snapshot: X, manifest: MANIFEST, size: 20, generation: 1 });
        s.appendChunk('B', 0, bytes(5, 0));
        const before = dump(s);
        expect(code(() => s.appendChunk('B', 10, bytes(5, 0)))).toBe('FG_CHUNK_OFFSET');
        expect(code(() => s.appendChunk('B', 0, bytes(5, 0)))).toBe('FG_CHUNK_OFFSET');
        expect(dump(s)).toEqual(before);
      });

      it('never accepts more bytes than the signed size', () => {
        s.beginDownload('B', { snapshot: X, manifest: MANIFEST, size: 8, generation: 1 });
        s.appendChunk('B', 0, bytes(5, 0));
        const before = dump(s);
        expect(code(() => s.appendChunk('B', 5, bytes(4, 0)))).toBe('FG_PAYLOAD_SIZE_MISMATCH');
        expect(dump(s)).toEqual(before);
      });

      it('refuses chunks for a slot that is not downloading', () => {
        expect(code(() => s.appendChunk('B', 0, bytes(1, 0)))).toBe('FG_SLOT_STATE');
        install(s, 'B', X, bytes(5, 0), 1);
        expect(code(() => s.appendChunk('B', 5, bytes(1, 0)))).toBe('FG_SLOT_STATE');
      });

      it('restarting a download empties the slot', () => {
        s.beginDownload('B', { snapshot: X, manifest: MANIFEST, size: 10, generation: 1 });
        s.appendChunk('B', 0, bytes(6, 0));
        s.beginDownload('B', { snapshot: Y, manifest: MANIFEST, size: 4, generation: 2 });
        expect(s.slot('B')).toMatchObject({ snapshot: Y, stored: 0, size: 4, state: 'downloading', generation: 2 });
        expect(s.readPayload('B').byteLength).toBe(0);
      });

      it('refuses an invalid snapshot id or size', () => {
        expect(code(() => s.beginDownload('B', { snapshot: 'nope', manifest: MANIFEST, size: 1, generation: 1 }))).toBe(
          'FG_SLOT_STATE',
        );
        expect(code(() => s.beginDownload('B', { snapshot: X, manifest: MANIFEST, size: -1, generation: 1 }))).toBe(
          'FG_SLOT_STATE',
        );
      });

      it('never overwrites the active slot, and never downloads during a trial', () => {
        install(s, 'B', X, bytes(5, 0), 1);
        s.switchTo('B');
        const before = dump(s);
        expect(code(() => s.beginDownload('A', { snapshot: Y, manifest: MANIFEST, size: 1, generation: 2 }))).toBe(
          'FG_SLOT_TRIAL',
        );
        s.commit();
        expect(code(() => s.beginDownload('B', { snapshot: Y, manifest: MANIFEST, size: 1, generation: 2 }))).toBe(
          'FG_SLOT_ACTIVE',
        );
        expect(dump(s)).toMatchObject({ A: (before as { A: unknown }).A, B: (before as { B: unknown }).B });
      });

      it('returns copies: mutating inputs or outputs does not touch the store', () => {
        const chunk = bytes(4, 3);
        const manifest = Uint8Array.from(MANIFEST);
        s.beginDownload('B', { snapshot: X, manifest, size: 4, generation: 1 });
        s.appendChunk('B', 0, chunk);
        chunk.fill(0);
        manifest.fill(0);
        s.readPayload('B').fill(9);
        s.slot('B').manifest?.fill(9);
        for (const c of s.chunks('B')) c.fill(9);
        expect(s.readPayload('B')).toEqual(bytes(4, 3));
        expect(s.slot('B').manifest).toEqual(MANIFEST);
      });
    });

    describe('storeView / agentStarts / chunkViews (what the update runner reads)', () => {
      const viewFrom = (st: SlotStore) => {
        const slot = (n: SlotName) => {
          const i = st.slot(n);
          return { snapshot: i.snapshot, state: i.state, stored: i.stored, size: i.size };
        };
        return { active: st.boot().active, trial: st.boot().trial, A: slot('A'), B: slot('B') };
      };

      it('equal what slot(), boot() and chunks() read, through a download, a switch, a restart and a commit', () => {
        expect(s.storeView()).toEqual(viewFrom(s));
        const payload = bytes(23, 3);
        s.beginDownload('B', { snapshot: X, manifest: MANIFEST, size: 23, generation: 1 });
        s.appendChunk('B', 0, payload.subarray(0, 10));
        expect(s.storeView()).toEqual(viewFrom(s));
        expect(s.storeView().B).toEqual({ snapshot: X, state: 'downloading', stored: 10, size: 23 });
        s.appendChunk('B', 10, payload.subarray(10));
        expect(Buffer.concat([...s.chunkViews('B')])).toEqual(Buffer.from(payload));
        expect([...s.chunkViews('A')]).toEqual([]);
        s.markStaged('B');
        s.switchTo('B');
        expect(s.storeView()).toEqual(viewFrom(s));
        expect(s.storeView()).toMatchObject({ active: 'B', trial: true });
        expect(s.countAgentStart()).toBe(1);
        expect(s.agentStarts()).toBe(1);
        reopen();
        expect(s.agentStarts()).toBe(s.boot().agentStarts);
        expect(s.storeView()).toEqual(viewFrom(s));
        s.commit();
        expect(s.storeView()).toEqual(viewFrom(s));
        expect(s.agentStarts()).toBe(0);
        s.close();
        expect(() => s.storeView()).toThrow(/FG_STORE_CLOSED|closed/i);
      });
    });

    describe('markStaged / clearSlot', () => {
      it('stages only a complete slot', () => {
        s.beginDownload('B', { snapshot: X, manifest: MANIFEST, size: 6, generation: 1 });
        s.appendChunk('B', 0, bytes(3, 0));
        expect(code(() => s.markStaged('B'))).toBe('FG_SLOT_STATE');
        s.appendChunk('B', 3, bytes(3, 0));
        s.markStaged('B');
        expect(s.slot('B').state).toBe('staged');
        s.markStaged('B'); // idempotent
        expect(s.slot('B').state).toBe('staged');
        expect(code(() => s.markStaged('A'))).toBe('FG_SLOT_STATE');
      });

      it('clears a slot completely; clearing an empty slot is a no-op', () => {
        install(s, 'B', X, bytes(9, 0), 1);
        s.clearSlot('B');
        expect(s.slot('B')).toMatchObject({ snapshot: null, manifest: null, state: 'empty', stored: 0, size: null });
        expect(s.readPayload('B').byteLength).toBe(0);
        s.clearSlot('B');
        s.clearSlot('A');
        expect(s.slot('A').state).toBe('empty');
      });

      it('refuses to clear the active slot or the rollback target of a trial', () => {
        install(s, 'B', X, bytes(5, 0), 1);
        s.switchTo('B');
        s.commit();
        install(s, 'A', Y, bytes(5, 1), 2);
        s.switchTo('A');
        expect(code(() => s.clearSlot('A'))).toBe('FG_SLOT_ACTIVE');
        expect(code(() => s.clearSlot('B'))).toBe('FG_SLOT_TRIAL');
        s.commit();
        s.clearSlot('B');
        expect(s.slot('B').state).toBe('empty');
      });
    });

    describe('switchTo / commit / revert', () => {
      it('switches in one step: pointers, slot states, trial flag, counters', () => {
        install(s, 'B', X, bytes(5, 0), 1);
        s.switchTo('B');
        expect(s.boot()).toMatchObject({ active: 'B', previous: 'A', trial: true, agentStarts: 0, runtimeStarts: 0 });
        expect(s.slot('B').state).toBe('active');
        expect(s.slot('A').state).toBe('empty');
        s.commit();
        expect(s.boot()).toMatchObject({ active: 'B', previous: 'A', trial: false });
        install(s, 'A', Y, bytes(5, 1), 2);
        s.switchTo('A');
        expect(s.boot()).toMatchObject({ active: 'A', previous: 'B', trial: true });
        expect(s.slot('A').state).toBe('active');
        expect(s.slot('B').state).toBe('good');
      });

      it('refuses to switch to a slot that is not staged, is active, or during a trial', () => {
        s.beginDownload('B', { snapshot: X, manifest: MANIFEST, size: 5, generation: 1 });
        s.appendChunk('B', 0, bytes(5, 0));
        const before = dump(s);
        expect(code(() => s.switchTo('B'))).toBe('FG_SLOT_STATE');
        expect(code(() => s.switchTo('A'))).toBe('FG_SLOT_STATE');
        expect(dump(s)).toEqual(before);
        s.markStaged('B');
        s.switchTo('B');
        expect(code(() => s.switchTo('A'))).toBe('FG_SLOT_TRIAL');
      });

      it('commit ends the trial and is idempotent', () => {
        s.commit();
        expect(s.boot().trial).toBe(false);
        install(s, 'B', X, bytes(5, 0), 1);
        s.switchTo('B');
        s.countAgentStart();
        s.commit();
        expect(s.boot()).toMatchObject({ trial: false, agentStarts: 0, active: 'B' });
        s.commit();
        expect(s.boot()).toMatchObject({ trial: false, active: 'B' });
      });

      it('revert restores the previous slot and marks the trial slot bad, remembering the generation', () => {
        install(s, 'B', X, bytes(5, 0), 1);
        s.switchTo('B');
        s.commit();
        install(s, 'A', Y, bytes(5, 1), 4);
        s.switchTo('A');
        s.revert({ markBad: true, generation: 4 });
        expect(s.boot()).toMatchObject({ active: 'B', previous: 'A', trial: false, agentStarts: 0 });
        expect(s.slot('B').state).toBe('active');
        expect(s.slot('A')).toMatchObject({ state: 'bad', snapshot: Y });
        expect(s.readPayload('A')).toEqual(bytes(5, 1)); // bytes kept: a newer generation may retry without download
        expect(s.badGeneration(Y)).toBe(4);
        expect(s.badGeneration(X)).toBeNull();
      });

      it('a superseded trial reverts without marking the snapshot bad', () => {
        install(s, 'B', X, bytes(5, 0), 1);
        s.switchTo('B');
        s.commit();
        install(s, 'A', Y, bytes(5, 1), 2);
        s.switchTo('A');
        s.revert({ markBad: false, generation: 3 });
        expect(s.slot('A').state).toBe('staged');
        expect(s.badGeneration(Y)).toBeNull();
      });

      it('reverting the first install returns to the empty slot', () => {
        install(s, 'B', X, bytes(5, 0), 1);
        s.switchTo('B');
        s.revert({ markBad: true, generation: 1 });
        expect(s.boot()).toMatchObject({ active: 'A', previous: 'B', trial: false });
        expect(s.slot('A').state).toBe('empty');
        expect(s.slot('B').state).toBe('bad');
      });

      it('refuses to revert outside a trial', () => {
        expect(code(() => s.revert({ markBad: true, generation: 1 }))).toBe('FG_SLOT_TRIAL');
      });

      it('a bad snapshot can be staged again from the bytes it holds', () => {
        install(s, 'B', X, bytes(5, 0), 1);
        s.switchTo('B');
        s.revert({ markBad: true, generation: 1 });
        s.markStaged('B');
        expect(s.slot('B').state).toBe('staged');
        s.switchTo('B');
        expect(s.boot()).toMatchObject({ active: 'B', trial: true });
      });

      it('badGeneration keeps the highest generation', () => {
        for (const g of [5, 3]) {
          install(s, 'B', X, bytes(5, 0), g);
          s.switchTo('B');
          s.revert({ markBad: true, generation: g });
          s.clearSlot('B');
        }
        expect(s.badGeneration(X)).toBe(5);
      });
    });

    describe('start counters', () => {
      it('count only during a trial, and reset on switch, commit and revert', () => {
        expect(s.countAgentStart()).toBe(0);
        expect(s.countRuntimeStart()).toBe(0);
        expect(s.boot()).toMatchObject({ agentStarts: 0, runtimeStarts: 0 });
        install(s, 'B', X, bytes(5, 0), 1);
        s.switchTo('B');
        expect(s.countAgentStart()).toBe(1);
        expect(s.countAgentStart()).toBe(2);
        expect(s.countRuntimeStart()).toBe(1);
        expect(s.boot()).toMatchObject({ agentStarts: 2, runtimeStarts: 1 });
        s.revert({ markBad: true, generation: 1 });
        expect(s.boot()).toMatchObject({ agentStarts: 0, runtimeStarts: 0 });
      });
    });

    describe('saveMachine', () => {
      it('saves the machine state and the generation with it', () => {
        const m: MachineState = {
          ...machine(12, 'downloading'),
          rollout: 'r1',
          progress: { bytes: 10, total: 20 },
          lastFailure: { category: 'download', code: 'FG_DOWNLOAD_TIMEOUT', detail: 'x' },
        };
        s.saveMachine(m);
        expect(s.boot().machine).toEqual(m);
        expect(s.boot().generation).toBe(12);
        s.saveMachine(machine(12, 'verifying'));
        expect(s.boot().machine?.phase).toBe('verifying');
      });

      it('never lets the handled generation go back', () => {
        s.saveMachine(machine(10));
        const before = dump(s);
        expect(code(() => s.saveMachine(machine(9)))).toBe('FG_GENERATION_REGRESSED');
        expect(dump(s)).toEqual(before);
      });
    });

    describe('crash safety', () => {
      it('reopening gives the same state', () => {
        install(s, 'B', X, bytes(17, 0), 1);
        s.switchTo('B');
        s.commit();
        s.beginDownload('A', { snapshot: Y, manifest: MANIFEST, size: 30, generation: 2 });
        s.appendChunk('A', 0, bytes(11, 4));
        s.saveMachine({ ...machine(2, 'downloading'), progress: { bytes: 11, total: 30 } });
        const before = dump(s);
        reopen();
        expect(dump(s)).toEqual(before);
        // and it goes on from there: the download resumes at the stored count
        expect(s.appendChunk('A', 11, bytes(19, 4))).toBe(30);
      });

      it('reopening in the middle of a trial keeps the trial and its counters', () => {
        install(s, 'B', X, bytes(5, 0), 1);
        s.switchTo('B');
        s.countAgentStart();
        s.countRuntimeStart();
        s.countRuntimeStart();
        reopen();
        expect(s.boot()).toMatchObject({ active: 'B', previous: 'A', trial: true, agentStarts: 1, runtimeStarts: 2 });
        expect(s.countAgentStart()).toBe(2);
      });

      it('a switch that fails half-way leaves the store unchanged', () => {
        install(s, 'B', X, bytes(5, 0), 1);
        const before = dump(s);
        subject.failWrites('boot'); // the slot rows are written first, the boot record last
        expect(code(() => s.switchTo('B'))).toBe('FG_STORAGE_WRITE');
        expect(dump(s)).toEqual(before);
        subject.healWrites();
        s.switchTo('B');
        expect(s.boot().active).toBe('B');
      });

      it('a chunk that cannot be written (a full disk, which may take part of it) changes nothing, and the download resumes', () => {
        s.beginDownload('B', { snapshot: X, manifest: MANIFEST, size: 10, generation: 1 });
        s.appendChunk('B', 0, bytes(4, 0));
        const before = dump(s);
        subject.failWrites('chunk');
        expect(code(() => s.appendChunk('B', 4, bytes(4, 0)))).toBe('FG_STORAGE_WRITE');
        expect(dump(s)).toEqual(before);
        subject.healWrites();
        expect(dump(reopen())).toEqual(before);
        expect(s.appendChunk('B', 4, bytes(6, 0))).toBe(10);
      });

      it('a revert that fails half-way leaves the trial as it was', () => {
        install(s, 'B', X, bytes(5, 0), 1);
        s.switchTo('B');
        const before = dump(s);
        subject.failWrites('bad'); // after both slot rows, before the boot record
        expect(code(() => s.revert({ markBad: true, generation: 1 }))).toBe('FG_STORAGE_WRITE');
        expect(dump(s)).toEqual(before);
        subject.healWrites();
        s.revert({ markBad: true, generation: 1 });
        expect(s.boot().active).toBe('A');
      });

      it('failed saves and counts change nothing', () => {
        install(s, 'B', X, bytes(5, 0), 1);
        s.switchTo('B');
        const before = dump(s);
        subject.failWrites('boot');
        expect(code(() => s.saveMachine(machine(3)))).toBe('FG_STORAGE_WRITE');
        expect(code(() => s.countAgentStart())).toBe('FG_STORAGE_WRITE');
        expect(code(() => s.commit())).toBe('FG_STORAGE_WRITE');
        expect(dump(s)).toEqual(before);
        subject.healWrites();
        expect(dump(reopen())).toEqual(before);
      });

      it('passes its integrity check after a full cycle', () => {
        install(s, 'B', X, bytes(50, 0), 1, 7);
        s.switchTo('B');
        s.commit();
        install(s, 'A', Y, bytes(40, 1), 2, 9);
        s.switchTo('A');
        s.revert({ markBad: true, generation: 2 });
        s.clearSlot('A');
        if (subject.integrityCheck) expect(subject.integrityCheck()).toBe('ok');
        reopen();
        if (subject.integrityCheck) expect(subject.integrityCheck()).toBe('ok');
        expect(s.readPayload('B')).toEqual(bytes(50, 0));
      });
    });

    it('a closed store refuses every call', () => {
      s.close();
      expect(code(() => s.boot())).toBe('FG_STORE_CLOSED');
      expect(code(() => s.slot('A'))).toBe('FG_STORE_CLOSED');
      expect(code(() => s.saveMachine(machine(1)))).toBe('FG_STORE_CLOSED');
      expect(code(() => s.readPayload('A'))).toBe('FG_STORE_CLOSED');
      expect(code(() => s.badGeneration(X))).toBe('FG_STORE_CLOSED');
    });
  });
}
